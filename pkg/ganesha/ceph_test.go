package ganesha

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testSecret = "AQBfXAdnAAAAABAAn3Yn1ZR4aX9k0cB2QyW8bA=="

func cephExport() Export {
	return Export{ID: 7, Path: "/volumes/nfs-provisioner/ns-claim-pvc-1/3b2c5f0e-aa", Pseudo: "/ns-claim-pvc-1",
		FSAL: FSAL{Name: FSALCeph, UserID: "nfs-provisioner.ns-claim-pvc-1", Secret: testSecret, Filesystem: "cephfs"}}
}

func TestCephExportRoundTrip(t *testing.T) {
	e := cephExport()
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	data := renderExport(e)
	for _, want := range []string{"Name = CEPH;", `Filesystem = "cephfs";`, `User_Id = "nfs-provisioner.ns-claim-pvc-1";`, `Secret_Access_Key = "` + testSecret + `";`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("rendered export lacks %s:\n%s", want, data)
		}
	}
	got, err := exportFromConfig(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !got.Equal(e) || got.FSAL != e.FSAL {
		t.Fatalf("round trip: got %s %+v, want %s", got, got.FSAL, e)
	}
	if got.Local() {
		t.Error("a CEPH export reads back as local")
	}
	// A VFS export reads back as VFS, equal to one that left FSAL empty.
	vfs := Export{ID: 8, Path: "/srv/a", Pseudo: "/a"}
	back, err := exportFromConfig(renderExport(vfs))
	if err != nil || !back.Equal(vfs) || !back.Local() {
		t.Fatalf("VFS round trip: %s, %v", back, err)
	}
}

// The key is a credential: it appears in the export file and nowhere else.
func TestCephSecretNeverInStringsOrErrors(t *testing.T) {
	e := cephExport()
	if s := e.String(); strings.Contains(s, testSecret) || !strings.Contains(s, "CEPH") {
		t.Errorf("String: %s", s)
	}
	bad := e
	bad.FSAL.Secret = testSecret + `"; }`
	err := bad.Validate()
	if err == nil {
		t.Fatal("a secret with a quote was accepted")
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("the error quotes the secret: %v", err)
	}
}

func TestCephExportEqualComparesFSAL(t *testing.T) {
	a := cephExport()
	for name, change := range map[string]func(*Export){
		"secret":     func(e *Export) { e.FSAL.Secret = "AQC" + testSecret[3:] },
		"user":       func(e *Export) { e.FSAL.UserID = "other" },
		"filesystem": func(e *Export) { e.FSAL.Filesystem = "fs2" },
		"vfs":        func(e *Export) { e.FSAL = FSAL{} },
	} {
		b := a
		change(&b)
		if a.Equal(b) {
			t.Errorf("exports differing in %s are Equal", name)
		}
	}
	if !a.Equal(cephExport()) {
		t.Error("identical CEPH exports are not Equal")
	}
}

func TestCephExportValidation(t *testing.T) {
	for name, f := range map[string]FSAL{
		"unknown FSAL":          {Name: "PROXY_V4"},
		"lower-case name":       {Name: "ceph", UserID: "u", Secret: testSecret, Filesystem: "cephfs"},
		"VFS with a user":       {Name: FSALVFS, UserID: "u"},
		"VFS with a secret":     {Secret: testSecret},
		"no user":               {Name: FSALCeph, Secret: testSecret, Filesystem: "cephfs"},
		"no secret":             {Name: FSALCeph, UserID: "u", Filesystem: "cephfs"},
		"no filesystem":         {Name: FSALCeph, UserID: "u", Secret: testSecret},
		"quote in user":         {Name: FSALCeph, UserID: `u"`, Secret: testSecret, Filesystem: "cephfs"},
		"newline in user":       {Name: FSALCeph, UserID: "u\nv", Secret: testSecret, Filesystem: "cephfs"},
		"brace in filesystem":   {Name: FSALCeph, UserID: "u", Secret: testSecret, Filesystem: "cephfs}"},
		"semicolon in fs":       {Name: FSALCeph, UserID: "u", Secret: testSecret, Filesystem: "a;b"},
		"space in secret":       {Name: FSALCeph, UserID: "u", Secret: "AQ B=", Filesystem: "cephfs"},
		"newline in secret":     {Name: FSALCeph, UserID: "u", Secret: "AQB\n=", Filesystem: "cephfs"},
		"client. prefix in use": {Name: FSALCeph, UserID: "client/x", Secret: testSecret, Filesystem: "cephfs"},
	} {
		e := cephExport()
		e.FSAL = f
		if err := e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
}

func TestParserRejectsForeignFSAL(t *testing.T) {
	base := string(renderExport(cephExport()))
	for name, text := range map[string]string{
		"missing key":      strings.Replace(base, "\t\tSecret_Access_Key = \""+testSecret+"\";\n", "", 1),
		"unquoted user":    strings.Replace(base, `User_Id = "nfs-provisioner.ns-claim-pvc-1"`, `User_Id = nfs-provisioner.ns-claim-pvc-1`, 1),
		"extra parameter":  strings.Replace(base, "\t\tName = CEPH;\n", "\t\tName = CEPH;\n\t\tCeph_Conf = \"/etc/ceph/other.conf\";\n", 1),
		"duplicate user":   strings.Replace(base, "\t\tName = CEPH;\n", "\t\tName = CEPH;\n\t\tUser_Id = \"admin\";\n", 1),
		"name not first":   strings.Replace(strings.Replace(base, "\t\tName = CEPH;\n", "", 1), "\t}\n}", "\t\tName = CEPH;\n\t}\n}", 1),
		"two FSAL blocks":  strings.Replace(base, "\tFSAL {", "\tFSAL {\n\t\tName = VFS;\n\t}\n\tFSAL {", 1),
		"VFS with a param": strings.Replace(string(renderExport(Export{ID: 3, Path: "/a", Pseudo: "/b"})), "Name = VFS;", "Name = VFS;\n\t\tUser_Id = \"x\";", 1),
	} {
		if e, err := exportFromConfig([]byte(text)); err == nil {
			t.Errorf("%s: parsed as %s", name, e)
		}
	}
}

// A CephFS export has no directory on this node, and it is not in
// exports.conf (TestCephExportsNotInIncludesAndUnserved says why), but its
// file is kept and reloaded; the file is root's alone, and a new key needs
// the export re-added.
func TestManagerCephExport(t *testing.T) {
	m, _, dir := newTestManager(t)
	ctx := context.Background()
	e := cephExport()
	if err := m.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	missing := Export{ID: 9, Path: filepath.Join(dir, "gone"), Pseudo: "/gone"}
	if err := os.Mkdir(missing.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, missing); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(missing.Path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "exports", "7.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the export file holding a key has mode %v, want 0600", fi.Mode().Perm())
	}
	// A restart reloads the files and rewrites exports.conf.
	m2, err := newExportManager(newFakeBus(), dir)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := os.ReadFile(filepath.Join(dir, "exports.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(inc), "7.conf") || strings.Contains(string(inc), "9.conf") {
		t.Errorf("exports.conf after a restart (want neither the CephFS 7 nor the missing local 9):\n%s", inc)
	}
	if got := m2.known[7]; got.FSAL != e.FSAL {
		t.Errorf("reloaded FSAL %+v", got.FSAL)
	}
	rotated := e
	rotated.FSAL.Secret = "AQC" + testSecret[3:]
	if err := m.Update(ctx, rotated); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Update with another key: %v, want ErrUnsupported", err)
	}
}

func TestRenderMainCephBlock(t *testing.T) {
	c := mainConfig{NFSPort: 2049, MountdPort: 20048, RecoveryRoot: "/s/recovery", LogLevel: "EVENT",
		ExportsInclude: "/s/exports.conf"}
	if strings.Contains(string(renderMain(c)), "CEPH") {
		t.Errorf("a CEPH block without a ceph.conf:\n%s", renderMain(c))
	}
	c.CephConf = "/etc/ceph/ceph.conf"
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	root, err := parseConfig(renderMain(c))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range root.Blocks {
		if b.Name == "CEPH" && len(b.Params) == 1 && b.Params[0].Key == "Ceph_Conf" && b.Params[0].Values[0].Text == c.CephConf {
			found = true
		}
	}
	if !found {
		t.Errorf("no CEPH { Ceph_Conf } block:\n%s", renderMain(c))
	}
	for _, bad := range []string{"ceph.conf", "/etc/ceph/\"x", "/etc/ceph/a\nb"} {
		c.CephConf = bad
		if c.validate() == nil {
			t.Errorf("ceph conf %q accepted", bad)
		}
	}
}

func TestFindCephPlugin(t *testing.T) {
	globs := []string{filepath.Join(t.TempDir(), "*", "ganesha", "libfsalceph.so")}
	if _, err := findPlugin(globs, "libfsalceph.so", "nfs-ganesha-ceph"); err == nil || !strings.Contains(err.Error(), "install nfs-ganesha-ceph") {
		t.Fatalf("missing plugin: %v", err)
	}
}

// CephFS exports never start with ganesha (a cluster that does not answer
// would hold its start); Unserved lists them, and what else has a file but
// is not live, for adding over D-Bus.
func TestCephExportsNotInIncludesAndUnserved(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx := context.Background()
	local := Export{ID: 3, Path: dir, Pseudo: "/local"}
	for _, e := range []Export{cephExport(), local} {
		if err := m.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	inc, err := os.ReadFile(filepath.Join(dir, "exports.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(inc), "7.conf") || !strings.Contains(string(inc), "3.conf") {
		t.Fatalf("exports.conf after Add (want 3, never the CephFS 7):\n%s", inc)
	}
	if err := m.writeIncludes(); err != nil {
		t.Fatal(err)
	}
	if inc, _ := os.ReadFile(filepath.Join(dir, "exports.conf")); strings.Contains(string(inc), "7.conf") {
		t.Fatalf("exports.conf after a rewrite:\n%s", inc)
	}
	if u, err := m.Unserved(ctx); err != nil || len(u) != 0 {
		t.Fatalf("Unserved while both are live: %v %v", u, err)
	}
	// As after a restart of ganesha: only what exports.conf names is live.
	delete(bus.active, 7)
	u, err := m.Unserved(ctx)
	if err != nil || len(u) != 1 || u[0].ID != 7 || u[0].FSAL != cephExport().FSAL {
		t.Fatalf("Unserved: %v %v", u, err)
	}
	if err := m.Add(ctx, u[0]); err != nil {
		t.Fatalf("adding it again: %v", err)
	}
	if u, _ := m.Unserved(ctx); len(u) != 0 {
		t.Fatalf("still unserved: %v", u)
	}
}

// ServeRemote adds the remote exports ganesha does not serve once the
// cluster serves, and not before.
func TestServeRemote(t *testing.T) {
	m, bus, dir := newTestManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	local := Export{ID: 3, Path: dir, Pseudo: "/local"}
	for _, e := range []Export{cephExport(), local} {
		if err := m.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// As after a restart of ganesha: only the local export is live.
	bus.mu.Lock()
	delete(bus.active, 7)
	bus.mu.Unlock()
	live := func() bool {
		bus.mu.Lock()
		defer bus.mu.Unlock()
		_, ok := bus.active[7]
		return ok
	}
	calls := 0
	addedEarly := make(chan bool, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.ServeRemote(ctx, time.Millisecond, func(context.Context) error {
			calls++
			switch calls {
			case 1:
				return errors.New("no active MDS")
			case 2:
				addedEarly <- live()
			}
			return nil
		})
	}()
	if <-addedEarly {
		t.Fatal("the CephFS export was added while the cluster did not serve")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !live() {
		if time.Now().After(deadline) {
			t.Fatal("the CephFS export was not served again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if u, err := m.Unserved(context.Background()); err != nil || len(u) != 0 {
		t.Fatalf("unserved: %v %v", u, err)
	}
}
