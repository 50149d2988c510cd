package ganesha

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFilesystemIDNeverPseudoRoot(t *testing.T) {
	seen := map[string]bool{}
	for id := 1; id <= 65535; id++ {
		fsid := Export{ID: uint16(id)}.FilesystemID()
		if fsid == "152.152" {
			t.Fatalf("export %d gets the pseudo root's Filesystem_Id", id)
		}
		if seen[fsid] {
			t.Fatalf("Filesystem_Id %s given twice", fsid)
		}
		seen[fsid] = true
	}
}

func TestRenderExportRoundTrip(t *testing.T) {
	for _, e := range []Export{
		{ID: 1, Path: "/srv/a", Pseudo: "/a"},
		{ID: 152, Path: "/srv/with space/ü", Pseudo: "/pv-152", Squash: NoRootSquash, Access: AccessRO},
		{ID: 65534, Path: "/x", Pseudo: "/y/z", Clients: []string{"127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8", "*.example.com", "@netgroup"}, SecType: []string{"sys", "krb5"}, Protocols: []int{3, 4}, Squash: AllSquash},
	} {
		data := renderExport(e)
		got, err := exportFromConfig(data)
		if err != nil {
			t.Fatalf("%s: %v\n%s", e, err, data)
		}
		if !got.Equal(e) {
			t.Errorf("round trip: got %s, want %s\n%s", got, e, data)
		}
		if !strings.Contains(string(data), "Filesystem_Id = "+e.FilesystemID()+";") {
			t.Errorf("no stable Filesystem_Id:\n%s", data)
		}
	}
}

func TestRenderMainConfig(t *testing.T) {
	c := mainConfig{BindAddress: "127.0.0.1", NFSPort: 12049, MountdPort: 12050, NFSv3: true, GracePeriod: 0,
		LeaseLifetime: 60, RecoveryRoot: "/state/recovery", LogLevel: "EVENT", ExportsInclude: "/state/exports.conf"}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	root, err := parseConfig(renderMain(c))
	if err != nil {
		t.Fatalf("%v\n%s", err, renderMain(c))
	}
	get := func(block, key string) string {
		for _, b := range root.Blocks {
			if b.Name != block {
				continue
			}
			for _, p := range b.Params {
				if p.Key == key {
					var vs []string
					for _, v := range p.Values {
						vs = append(vs, v.Text)
					}
					return strings.Join(vs, ",")
				}
			}
		}
		return "<missing>"
	}
	for _, c := range []struct{ block, key, want string }{
		{"NFS_CORE_PARAM", "NFS_Port", "12049"},
		{"NFS_CORE_PARAM", "MNT_Port", "12050"},
		{"NFS_CORE_PARAM", "Bind_addr", "127.0.0.1"},
		{"NFS_CORE_PARAM", "NFS_Protocols", "3,4"},
		{"NFS_CORE_PARAM", "fsid_device", "false"},
		{"NFS_CORE_PARAM", "mount_path_pseudo", "true"},
		{"NFSV4", "Graceless", "true"},
		{"NFSV4", "RecoveryRoot", "/state/recovery"},
		{"EXPORT_DEFAULTS", "Protocols", "3,4"},
		{"EXPORT_DEFAULTS", "Squash", "root_squash"},
	} {
		if got := get(c.block, c.key); got != c.want {
			t.Errorf("%s.%s = %s, want %s", c.block, c.key, got, c.want)
		}
	}
	if len(root.Includes) != 1 || root.Includes[0] != "/state/exports.conf" {
		t.Errorf("includes: %v", root.Includes)
	}
	c.NFSv3, c.GracePeriod, c.LeaseLifetime = false, 15, 15
	root, err = parseConfig(renderMain(c))
	if err != nil {
		t.Fatal(err)
	}
	if get("NFSV4", "Graceless") != "false" || get("NFSV4", "Grace_Period") != "15" || get("NFS_CORE_PARAM", "NFS_Protocols") != "4" {
		t.Errorf("grace/v4-only config:\n%s", renderMain(c))
	}
}

func TestParserRejectsForeignContent(t *testing.T) {
	base := string(renderExport(Export{ID: 3, Path: "/a", Pseudo: "/b"}))
	for name, text := range map[string]string{
		"second block":    base + "EXPORT { Export_Id = 4; }\n",
		"include":         base + "%include \"/etc/passwd\"\n",
		"unknown key":     strings.Replace(base, "\tSquash", "\tDisable_ACL = true;\n\tSquash", 1),
		"fsid from dev":   strings.Replace(base, "Filesystem_Id = 100.3", "Filesystem_Id = 152.152", 1),
		"duplicate key":   strings.Replace(base, "\tSquash", "\tPath = \"/etc\";\n\tSquash", 1),
		"unquoted path":   strings.Replace(base, `Path = "/a"`, `Path = /a`, 1),
		"other fsal":      strings.Replace(base, "Name = VFS", "Name = PROXY_V4", 1),
		"unterminated":    strings.Replace(base, `"/a"`, `"/a`, 1),
		"missing closing": strings.TrimSuffix(base, "}\n"),
	} {
		if e, err := exportFromConfig([]byte(text)); err == nil {
			t.Errorf("%s: parsed as %s", name, e)
		}
	}
}

func TestValidateRejectsDangerousValues(t *testing.T) {
	ok := Export{ID: 1, Path: "/srv/a", Pseudo: "/a"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []string{"", "rel", "/a/../b", "/a/..", "/a/./b", "/a/", "//a", "/a;b", "/a{", "/a}", `/a"`, "/a#b", "/a\nb", "/a\x00b", "/a\\b", "/a'b", "/a\tb", "/a\xffb", "/a\u200bb"}
	for _, p := range bad {
		e := ok
		e.Path = p
		if e.Validate() == nil {
			t.Errorf("path %q accepted", p)
		}
		e = ok
		e.Pseudo = p
		if e.Validate() == nil {
			t.Errorf("pseudo %q accepted", p)
		}
	}
	for _, c := range []string{"", "a b", "1.2.3.4;", "{", "a,b", "*", "10.0.0.1/8", "1.2.3.4/33", "@", "a=b", "host#x", "x\ny"} {
		e := ok
		e.Clients = []string{"127.0.0.1", c}
		if e.Validate() == nil {
			t.Errorf("client %q accepted", c)
		}
	}
	for _, e := range []Export{
		{ID: 1, Path: "/a", Pseudo: "/b", Access: "rw"},
		{ID: 1, Path: "/a", Pseudo: "/b", Squash: "root_id_squash"},
		{ID: 1, Path: "/a", Pseudo: "/b", SecType: []string{"sys", "sys"}},
		{ID: 1, Path: "/a", Pseudo: "/b", SecType: []string{"sys; x"}},
		{ID: 1, Path: "/a", Pseudo: "/b", Protocols: []int{2}},
	} {
		if err := e.Validate(); err == nil {
			t.Errorf("%s accepted", e)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: time.Second, stableAfter: 10 * time.Second}
	var got []time.Duration
	for i := 0; i < 6; i++ {
		got = append(got, b.next(time.Millisecond))
	}
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("quick failures: %v, want %v", got, want)
	}
	if d := b.next(time.Minute); d != 0 {
		t.Errorf("after a stable run: %v, want 0", d)
	}
}

// The sentinel is ganesha's first export: rendered before the include of
// every volume's export, admitting only an address no host has.
func TestSentinelRenderedFirst(t *testing.T) {
	c := mainConfig{NFSPort: 2049, MountdPort: 20048, RecoveryRoot: "/s/recovery", LogLevel: "EVENT",
		ExportsInclude: "/s/exports.conf", SentinelPath: "/s/sentinel"}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	out := string(renderMain(c))
	sentinel := strings.Index(out, "Export_Id = 65535;")
	include := strings.Index(out, `%include "/s/exports.conf"`)
	if sentinel < 0 || include < 0 || sentinel > include {
		t.Fatalf("sentinel at %d, include at %d:\n%s", sentinel, include, out)
	}
	if !strings.Contains(out, "Clients = 192.0.2.1;") || !strings.Contains(out, "Access_Type = None;") {
		t.Fatalf("the sentinel admits someone:\n%s", out)
	}
	if err := (Export{ID: SentinelExportID, Path: "/v", Pseudo: "/v"}).Validate(); err == nil {
		t.Fatal("a volume may take the sentinel's export ID")
	}
}

// A server that another may take over from: rados_ng recovery under a
// pinned node ID, and a pinned scope and owner.
func TestRenderFailoverConfig(t *testing.T) {
	c := mainConfig{NFSPort: 2049, MountdPort: 20048, RecoveryRoot: "/s/recovery", LogLevel: "EVENT",
		ExportsInclude: "/s/exports.conf", GracePeriod: 15, LeaseLifetime: 15,
		Recovery: &RADOSRecovery{CephConf: "/etc/ceph/ceph.conf", UserID: "nfs-provisioner", Pool: "nfs-ganesha",
			Namespace: "0e6a0d5e-store", NodeID: "0e6a0d5e-store"},
		ServerScope: "0e6a0d5e-store"}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	out := string(renderMain(c))
	for _, want := range []string{"\tRecoveryBackend = rados_ng;\n", "\tAttr_Expiration_Time = 0;\n", "\tServer_Scope = \"0e6a0d5e-store\";\n",
		"\tServer_Owner = \"0e6a0d5e-store\";\n", "RADOS_KV {\n\tCeph_Conf = \"/etc/ceph/ceph.conf\";\n\tUserId = \"nfs-provisioner\";\n" +
			"\tPool = \"nfs-ganesha\";\n\tNamespace = \"0e6a0d5e-store\";\n\tnodeid = \"0e6a0d5e-store\";\n}\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for name, bad := range map[string]func(*mainConfig){
		"empty node ID":    func(c *mainConfig) { c.Recovery.NodeID = "" },
		"quote in pool":    func(c *mainConfig) { c.Recovery.Pool = `a"b` },
		"relative conf":    func(c *mainConfig) { c.Recovery.CephConf = "ceph.conf" },
		"newline in scope": func(c *mainConfig) { c.ServerScope = "a\nb" },
	} {
		r := *c.Recovery
		d := c
		d.Recovery = &r
		bad(&d)
		if err := d.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	plain := c
	plain.Recovery, plain.ServerScope = nil, ""
	if out := string(renderMain(plain)); strings.Contains(out, "RADOS_KV") || strings.Contains(out, "RecoveryBackend") || strings.Contains(out, "Attr_Expiration_Time") || strings.Contains(out, "Server_Scope") {
		t.Errorf("a single server got failover settings:\n%s", out)
	}
}
