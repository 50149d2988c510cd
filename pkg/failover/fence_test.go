package failover

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCeph is a ceph command for the fence's logic: `fs get` answers rank
// 0, `client ls` prints the sessions in $DIR/sessions (one JSON object a
// line) and `client evict id=N` removes session N, counting calls in
// $DIR/calls. A session listed in $DIR/respawn comes back once after its
// first eviction, as a server that reconnected between two listings would.
const fakeCeph = `#!/bin/sh
D=$(dirname "$0")
# The fence evicts several sessions at once: one call at a time here.
exec 9>"$D/lock"; flock 9
echo "$*" >> "$D/calls"
case "$*" in
*"fs get"*) echo '{"mdsmap": {"up": {"mds_0": 4100}}}' ;;
*"client ls"*) printf '['; sep=''; while read -r l; do [ -n "$l" ] && printf '%s%s' "$sep" "$l" && sep=','; done < "$D/sessions"; echo ']' ;;
*"client evict id="*)
  id=${*##*id=}
  grep -v "\"id\": $id," "$D/sessions" > "$D/s.new"; mv "$D/s.new" "$D/sessions"
  if grep -q "\"id\": $id," "$D/respawn" 2>/dev/null; then
    grep "\"id\": $id," "$D/respawn" | sed "s/\"id\": $id,/\"id\": 9$id,/" >> "$D/sessions"; : > "$D/respawn"
  fi ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
`

func session(id, root, holder string) string {
	md := `"root": "` + root + `"`
	if holder != "" {
		md += `, "` + HolderKey + `": "` + holder + `"`
	}
	return `{"id": ` + id + `, "inst": "client.` + id + ` v1:127.0.0.1:0/1", "client_metadata": {"entity_id": "x", ` + md + `}}`
}

func fakeCluster(t *testing.T, sessions ...string) (Ceph, string) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ceph")
	if err := os.WriteFile(bin, []byte(fakeCeph), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sessions"), []byte(strings.Join(sessions, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Ceph{Binary: bin, FS: "cephfs"}, dir
}

func remaining(t *testing.T, dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "sessions"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestFence: every session of the store goes, a session that reconnects
// between listings goes too, and nobody else's session is touched.
func TestFence(t *testing.T) {
	store := Scope{Paths: []string{"/volumes/_nogroup/st", "/volumes/g"}, Self: "me"}
	c, dir := fakeCluster(t,
		session("1", "/volumes/g/v1/u", ""),      // the old ganesha's export
		session("2", "/volumes/_nogroup/st", ""), // the old state mount
		session("3", "/", ""),                    // an admin
		session("4", "/volumes/g2/v1/u", ""),     // another store
		session("5", "/volumes/_nogroup/st", "me"),
	)
	if err := os.WriteFile(filepath.Join(dir, "respawn"), []byte(session("1", "/volumes/g/v1/u", "")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evicted, err := Fence(context.Background(), c, store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(evicted) != 3 {
		t.Errorf("evicted %v, want sessions 1, 2 and the respawned 91", evicted)
	}
	left := remaining(t, dir)
	for _, id := range []string{`"id": 1,`, `"id": 2,`, `"id": 91,`} {
		if strings.Contains(left, id) {
			t.Errorf("session %s survived the fence", id)
		}
	}
	for _, id := range []string{`"id": 3,`, `"id": 4,`, `"id": 5,`} {
		if !strings.Contains(left, id) {
			t.Errorf("session %s was evicted but is not the store's (or is ours)", id)
		}
	}
}

// TestFenceKnown: with an earlier listing, its sessions are evicted before
// any listing, and a fresh listing still decides when the fence is done.
func TestFenceKnown(t *testing.T) {
	store := Scope{Paths: []string{"/volumes/g"}}
	c, dir := fakeCluster(t, session("1", "/volumes/g/a", ""), session("7", "/volumes/g/b", ""))
	known, err := parseSessions(0, []byte("["+session("1", "/volumes/g/a", "")+"]"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Fence(context.Background(), c, store, []int{0}, known); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], "client evict id=1") || !strings.Contains(lines[1], "client ls") {
		t.Errorf("calls:\n%s\nwant the known session evicted first, then a listing", calls)
	}
	if left := remaining(t, dir); strings.Contains(left, `"id": 7,`) || strings.Contains(left, `"id": 1,`) {
		t.Errorf("left: %s", left)
	}
	// An empty earlier listing never ends the fence by itself.
	c, dir = fakeCluster(t, session("8", "/volumes/g/c", ""))
	if _, err := Fence(context.Background(), c, store, []int{0}, []Session{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(remaining(t, dir), `"id": 8,`) {
		t.Error("an empty earlier listing ended the fence before a fresh one")
	}
}
