package ganesha

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

func TestServerExportsReadWrite(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), true))
	ctx := testContext(t)
	var exports []Export
	for i := 1; i <= 3; i++ {
		e := Export{ID: uint16(i), Path: exportDir(t, root, fmt.Sprintf("data/pv%d", i)), Pseudo: fmt.Sprintf("/pv%d", i), Squash: NoRootSquash}
		if err := s.Exports().Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, e)
	}
	list, err := s.Exports().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("List: got %d exports, want 3: %v", len(list), list)
	}
	for i, e := range exports {
		if !list[i].Equal(e) {
			t.Errorf("List[%d] = %s, want %s", i, list[i], e)
		}
		big := make([]byte, 1<<20)
		rand.Read(big)
		small := []byte(fmt.Sprintf("hello v4 from export %d\n", e.ID))
		v3, v4 := target(s, e.Pseudo, 3), target(s, e.Pseudo, 4)
		v3lib := v3
		v3lib.Tool = "libnfs"
		if err := nfsclient.WriteFile(ctx, v3, "big.bin", big); err != nil {
			t.Fatal(err)
		}
		if err := nfsclient.WriteFile(ctx, v4, "small.txt", small); err != nil {
			t.Fatal(err)
		}
		if err := nfsclient.WriteFile(ctx, v3lib, "lib.bin", big[:200000]); err != nil {
			t.Fatal(err)
		}
		// Each file read back over the other protocol and from disk.
		got, err := nfsclient.ReadFile(ctx, v4, "big.bin")
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("v4 read of v3 write: %d bytes, err %v", len(got), err)
		}
		got, err = nfsclient.ReadFile(ctx, v3, "small.txt")
		if err != nil || !bytes.Equal(got, small) {
			t.Fatalf("v3 read of v4 write: %q, err %v", got, err)
		}
		got, err = nfsclient.ReadFile(ctx, v3lib, "lib.bin")
		if err != nil || !bytes.Equal(got, big[:200000]) {
			t.Fatalf("libnfs v3 read: %d bytes, err %v", len(got), err)
		}
		onDisk, err := os.ReadFile(filepath.Join(e.Path, "big.bin"))
		if err != nil || !bytes.Equal(onDisk, big) {
			t.Fatalf("file on disk differs: %d bytes, err %v", len(onDisk), err)
		}
		for _, tg := range []nfsclient.Target{v3, v4} {
			entries, err := nfsclient.List(ctx, tg, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 3 {
				t.Errorf("%s: listed %v, want big.bin, small.txt, lib.bin", tg, entries)
			}
		}
	}
	if err := s.Healthy(); err != nil {
		t.Fatal(err)
	}
}

func TestSquashModesSetOwners(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), true))
	ctx := testContext(t)
	const nobody = 65534
	cases := []struct {
		squash           Squash
		rootOwner, owner uint32 // owner of a file written by uid 0, and by uid 1000
	}{
		{NoRootSquash, 0, 1000},
		{RootSquash, nobody, 1000},
		{AllSquash, nobody, nobody},
	}
	for i, c := range cases {
		t.Run(string(c.squash), func(t *testing.T) {
			e := Export{ID: uint16(10 + i), Path: exportDir(t, root, "sq/"+string(c.squash)), Pseudo: "/" + string(c.squash), Squash: c.squash}
			if err := s.Exports().Add(ctx, e); err != nil {
				t.Fatal(err)
			}
			for _, version := range []int{3, 4} {
				for _, uid := range []uint32{0, 1000} {
					tg := target(s, e.Pseudo, version)
					tg.UID, tg.GID = uid, uid
					name := fmt.Sprintf("v%d-uid%d", version, uid)
					if err := nfsclient.WriteFile(ctx, tg, name, []byte(name)); err != nil {
						t.Fatal(err)
					}
					want := c.owner
					if uid == 0 {
						want = c.rootOwner
					}
					var st syscall.Stat_t
					if err := syscall.Stat(filepath.Join(e.Path, name), &st); err != nil {
						t.Fatal(err)
					}
					if st.Uid != want || st.Gid != want {
						t.Errorf("%s written by uid %d over v%d: owner %d:%d, want %d:%d", c.squash, uid, version, st.Uid, st.Gid, want, want)
					}
					// The client sees the same owner.
					ent, err := nfsclient.Stat(ctx, tg, name)
					if err != nil {
						t.Fatal(err)
					}
					if ent.UID != want {
						t.Errorf("%s over v%d: client sees uid %d, want %d", name, version, ent.UID, want)
					}
				}
			}
		})
	}
}

func TestRemoveRefusesClients(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), true))
	ctx := testContext(t)
	e := Export{ID: 3, Path: exportDir(t, root, "gone"), Pseudo: "/gone", Squash: NoRootSquash}
	keep := Export{ID: 4, Path: exportDir(t, root, "kept"), Pseudo: "/kept", Squash: NoRootSquash}
	for _, x := range []Export{e, keep} {
		if err := s.Exports().Add(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := nfsclient.WriteFile(ctx, target(s, e.Pseudo, 3), "f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Exports().Remove(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	_, err := nfsclient.ReadFile(ctx, target(s, e.Pseudo, 3), "f")
	var me *nfsclient.MountError
	if !errors.As(err, &me) || me.Status != 13 {
		t.Errorf("v3 read after Remove: %v, want MNT3ERR_ACCES (13)", err)
	}
	if _, err := nfsclient.ReadFile(ctx, target(s, e.Pseudo, 4), "f"); err == nil || !strings.Contains(err.Error(), "NOENT") {
		t.Errorf("v4 read after Remove: %v, want NFS4ERR_NOENT", err)
	}
	// Idempotent, and the file is gone from the config.
	if err := s.Exports().Remove(ctx, e.ID); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.paths.exports, "3.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export file still there: %v", err)
	}
	inc, _ := os.ReadFile(s.paths.includes)
	if strings.Contains(string(inc), "3.conf") || !strings.Contains(string(inc), "4.conf") {
		t.Errorf("exports.conf after Remove:\n%s", inc)
	}
	if err := nfsclient.WriteFile(ctx, target(s, keep.Pseudo, 3), "f", []byte("x")); err != nil {
		t.Errorf("the other export: %v", err)
	}
}

func TestCrashRestartServesEveryExport(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), true))
	ctx := testContext(t)
	var exports []Export
	for i := 1; i <= 3; i++ {
		e := Export{ID: uint16(20 + i), Path: exportDir(t, root, fmt.Sprintf("c%d", i)), Pseudo: fmt.Sprintf("/c%d", i), Squash: NoRootSquash}
		if err := s.Exports().Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := nfsclient.WriteFile(ctx, target(s, e.Pseudo, 3), "f", []byte(e.Pseudo)); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, e)
	}
	old := s.GaneshaPID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 30*time.Second, func() error {
		for _, e := range exports {
			for _, v := range []int{3, 4} {
				got, err := nfsclient.ReadFile(ctx, target(s, e.Pseudo, v), "f")
				if err != nil {
					return err
				}
				if string(got) != e.Pseudo {
					return fmt.Errorf("read %q", got)
				}
			}
		}
		return nil
	})
	t.Logf("every export served again %s after kill -9 (target 2s)", took)
	if pid := s.GaneshaPID(); pid == 0 || pid == old {
		t.Errorf("ganesha pid after restart: %d (old %d)", pid, old)
	}
	if s.Restarts() < 1 {
		t.Errorf("Restarts() = %d", s.Restarts())
	}
	if err := s.Healthy(); err != nil {
		t.Error(err)
	}
	list, err := s.Exports().List(ctx)
	if err != nil || len(list) != 3 {
		t.Errorf("List after restart: %v, %v", list, err)
	}
}

func TestStopStartKeepsExportsWithoutGraceStall(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(t, filepath.Join(root, "state"), true)
	cfg.GracePeriod = 0
	ctx := testContext(t)
	s := startServer(t, cfg)
	var exports []Export
	for i := 1; i <= 3; i++ {
		e := Export{ID: uint16(30 + i), Path: exportDir(t, root, fmt.Sprintf("r%d", i)), Pseudo: fmt.Sprintf("/r%d", i), Squash: NoRootSquash}
		if err := s.Exports().Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		// v4 clients leave records in RecoveryRoot: what would start a grace period.
		if err := nfsclient.WriteFile(ctx, target(s, e.Pseudo, 4), "before", []byte("1")); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, e)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if s.GaneshaPID() != 0 || s.Healthy() == nil {
		t.Fatal("ganesha still running after Stop")
	}
	s2 := startServer(t, cfg)
	t0 := time.Now()
	// One attempt each, no retry: under a grace period the first v4 OPEN
	// fails with NFS4ERR_GRACE (or hangs until the context ends).
	for _, e := range exports {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := nfsclient.WriteFile(wctx, target(s2, e.Pseudo, 4), "after", []byte("2"))
		cancel()
		if err != nil {
			t.Fatalf("first v4 write after restart: %v", err)
		}
		if got, err := nfsclient.ReadFile(ctx, target(s2, e.Pseudo, 3), "before"); err != nil || string(got) != "1" {
			t.Fatalf("v3 read after restart: %q, %v", got, err)
		}
	}
	t.Logf("first v4 writes on 3 exports %s after Start returned", time.Since(t0))
	list, err := s2.Exports().List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("List after restart: %v, %v", list, err)
	}
}

func TestStaleLeftoversReplaced(t *testing.T) {
	needGanesha(t)
	root := t.TempDir()
	state := filepath.Join(root, "state")
	data := exportDir(t, root, "left")
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("left"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, state, false)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperStateEnv+"="+state,
		fmt.Sprintf("%s=%d,%d", helperPortsEnv, cfg.NFSPort, cfg.MountdPort), helperExportEnv+"="+data)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	var oldGanesha, oldDBus int
	if _, serr := fmt.Sscanf(line, "READY %d %d", &oldGanesha, &oldDBus); serr != nil {
		helper.Process.Kill()
		helper.Wait()
		t.Fatalf("helper: %q %v", line, err)
	}
	// The provisioner dies hard; its children stay behind.
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()
	for _, pid := range []int{oldGanesha, oldDBus} {
		if !procRunning(pid) {
			t.Fatalf("precondition: leftover %d is not running", pid)
		}
	}
	t.Cleanup(func() { // in case the test fails before replacing them
		for _, pid := range []int{oldGanesha, oldDBus} {
			if isOurLeftover(pid, "ganesha.nfsd", state) || isOurLeftover(pid, "dbus-daemon", state) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	s := startServer(t, cfg)
	ctx := testContext(t)
	for _, pid := range []int{oldGanesha, oldDBus} {
		if procRunning(pid) {
			t.Errorf("leftover %d still running", pid)
		}
	}
	if s.GaneshaPID() == oldGanesha {
		t.Error("the leftover ganesha was adopted, not replaced")
	}
	got, err := nfsclient.ReadFile(ctx, target(s, "/left", 4), "f")
	if err != nil || string(got) != "left" {
		t.Fatalf("export of the killed run: %q, %v", got, err)
	}
	list, err := s.Exports().List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != 7 {
		t.Fatalf("List: %v, %v", list, err)
	}
}

func TestBadInputRejectedWithoutFiles(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), false))
	ctx := testContext(t)
	good := Export{ID: 1, Path: exportDir(t, root, "good"), Pseudo: "/good"}
	if err := s.Exports().Add(ctx, good); err != nil {
		t.Fatal(err)
	}
	other := exportDir(t, root, "other")
	cases := []struct {
		name string
		e    Export
		want error // nil: any error
	}{
		{"path with semicolon", Export{ID: 2, Path: other + ";x", Pseudo: "/a"}, ErrInvalid},
		{"path with brace", Export{ID: 2, Path: other + "}", Pseudo: "/a"}, ErrInvalid},
		{"path with dotdot", Export{ID: 2, Path: other + "/../good", Pseudo: "/a"}, ErrInvalid},
		{"relative path", Export{ID: 2, Path: "data/x", Pseudo: "/a"}, ErrInvalid},
		{"pseudo with newline", Export{ID: 2, Path: other, Pseudo: "/a\nEXPORT"}, ErrInvalid},
		{"pseudo root", Export{ID: 2, Path: other, Pseudo: "/"}, ErrInvalid},
		{"client injection", Export{ID: 2, Path: other, Pseudo: "/a", Clients: []string{"1.2.3.4; } EXPORT {"}}, ErrInvalid},
		{"client with space", Export{ID: 2, Path: other, Pseudo: "/a", Clients: []string{"bad client"}}, ErrInvalid},
		{"client cidr host bits", Export{ID: 2, Path: other, Pseudo: "/a", Clients: []string{"10.1.2.3/8"}}, ErrInvalid},
		{"id zero", Export{ID: 0, Path: other, Pseudo: "/a"}, ErrInvalid},
		{"missing directory", Export{ID: 2, Path: filepath.Join(root, "nope"), Pseudo: "/a"}, nil},
		{"duplicate id, other content", Export{ID: 1, Path: other, Pseudo: "/other"}, ErrConflict},
		{"duplicate pseudo", Export{ID: 2, Path: other, Pseudo: "/good"}, ErrConflict},
	}
	for _, c := range cases {
		err := s.Exports().Add(ctx, c.e)
		switch {
		case err == nil:
			t.Errorf("%s: accepted", c.name)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		default:
			t.Logf("%s: %v", c.name, err)
		}
		if c.want == ErrConflict && (!strings.Contains(err.Error(), good.Path) || !strings.Contains(err.Error(), c.e.Path)) {
			t.Errorf("%s: error does not name both exports: %v", c.name, err)
		}
	}
	entries, err := os.ReadDir(s.paths.exports)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	if len(names) != 1 || names[0] != "1.conf" {
		t.Errorf("exports dir holds %v, want only 1.conf", names)
	}
	// Still exactly the good export, unchanged, and re-adding it is fine.
	if err := s.Exports().Add(ctx, good); err != nil {
		t.Errorf("re-adding the identical export: %v", err)
	}
	list, err := s.Exports().List(ctx)
	if err != nil || len(list) != 1 || !list[0].Equal(good) {
		t.Errorf("List: %v, %v", list, err)
	}
}

func TestClientRestrictionAndReadOnly(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), true))
	ctx := testContext(t)
	allowed := Export{ID: 41, Path: exportDir(t, root, "allowed"), Pseudo: "/allowed", Squash: NoRootSquash, Clients: []string{"127.0.0.1", "10.0.0.0/8"}}
	denied := Export{ID: 42, Path: exportDir(t, root, "denied"), Pseudo: "/denied", Squash: NoRootSquash, Clients: []string{"10.0.0.0/8"}}
	ro := Export{ID: 43, Path: exportDir(t, root, "ro"), Pseudo: "/ro", Squash: NoRootSquash, Access: AccessRO}
	for _, e := range []Export{allowed, denied, ro} {
		if err := s.Exports().Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(ro.Path, "f"), []byte("ro"), 0o644)
	if err := nfsclient.WriteFile(ctx, target(s, allowed.Pseudo, 3), "f", []byte("ok")); err != nil {
		t.Errorf("listed client: %v", err)
	}
	if err := nfsclient.WriteFile(ctx, target(s, denied.Pseudo, 3), "f", []byte("no")); err == nil {
		t.Error("unlisted client could write")
	}
	if _, err := os.Stat(filepath.Join(denied.Path, "f")); err == nil {
		t.Error("file written through an export that refuses the client")
	}
	if err := nfsclient.WriteFile(ctx, target(s, ro.Pseudo, 3), "g", []byte("no")); err == nil {
		t.Error("write to a read-only export succeeded")
	}
	if got, err := nfsclient.ReadFile(ctx, target(s, ro.Pseudo, 3), "f"); err != nil || string(got) != "ro" {
		t.Errorf("read from read-only export: %q, %v", got, err)
	}
}

func TestNFSv4OnlyNeedsNoRpcbind(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), false))
	ctx := testContext(t)
	e := Export{ID: 5, Path: exportDir(t, root, "v4"), Pseudo: "/v4", Squash: NoRootSquash}
	if err := s.Exports().Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := nfsclient.WriteFile(ctx, target(s, e.Pseudo, 4), "f", []byte("v4")); err != nil {
		t.Fatal(err)
	}
	if s.rpcbind.owned != nil {
		t.Error("rpcbind started for a v4-only server")
	}
	if _, err := nfsclient.ReadFile(ctx, target(s, e.Pseudo, 3), "f"); err == nil {
		t.Error("NFSv3 read from a v4-only server succeeded")
	}
}

func TestConnectExportManagerSharesState(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, testConfig(t, filepath.Join(root, "state"), false))
	ctx := testContext(t)
	e := Export{ID: 9, Path: exportDir(t, root, "shared"), Pseudo: "/shared"}
	if err := s.Exports().Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	m, err := ConnectExportManager(s.BusAddress(), s.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	list, err := m.List(ctx)
	if err != nil || len(list) != 1 || !list[0].Equal(e) {
		t.Fatalf("List through ConnectExportManager: %v, %v", list, err)
	}
	if err := m.Add(ctx, e); err != nil {
		t.Errorf("identical Add through a second manager: %v", err)
	}
	if _, err := ConnectExportManager("unix:path="+filepath.Join(root, "no.sock"), s.cfg.StateDir); err == nil {
		t.Error("connecting to a missing bus succeeded")
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"relative state dir":   {StateDir: "state"},
		"bad bind address":     {StateDir: dir, BindAddress: "localhost; x"},
		"same ports":           {StateDir: dir, NFSPort: 3000, MountdPort: 3000},
		"grace too long":       {StateDir: dir, GracePeriod: 1000},
		"missing binary":       {StateDir: dir, GaneshaPath: filepath.Join(dir, "no-ganesha")},
		"state dir with quote": {StateDir: filepath.Join(dir, `a"b`)},
	} {
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	_, err := NewServer(Config{StateDir: dir, GaneshaPath: filepath.Join(dir, "no-ganesha")})
	if err == nil || !strings.Contains(err.Error(), "install nfs-ganesha nfs-ganesha-vfs") {
		t.Errorf("missing ganesha: %v", err)
	}
}
