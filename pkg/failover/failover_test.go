package failover

import (
	"testing"
)

// clientLS is `ceph tell mds.cephfs:0 client ls --format=json` of Ceph
// 16.2.15, trimmed: a ganesha export's session, a ceph-fuse mount of the
// state carrying a holder, and an admin mount of "/".
const clientLS = `[
 {"id": 4272, "entity": {"name": {"type": "client", "num": 4272}}, "state": "open",
  "inst": "client.4272 v1:127.0.0.1:0/2599407999",
  "client_metadata": {"client_features": {"feature_bits": "0x000000000007ffff"}, "entity_id": "nfsp.vol1", "hostname": "vm",
   "pid": "22039", "root": "/volumes/nfsp/vol1/ffb17d9a", "timeout": "300", "uuid": "ganesha-store1-0007"}},
 {"id": 4300, "entity": {"name": {"type": "client", "num": 4300}}, "inst": "client.4300 v1:127.0.0.1:0/840743290",
  "client_metadata": {"entity_id": "admin", "root": "/volumes/_nogroup/nfsp-state/95b1", "nfs_provisioner_holder": "me"}},
 {"id": 4258, "entity": {"name": {"type": "client", "num": 4258}}, "inst": "client.4258 v1:127.0.0.1:0/3771652352",
  "client_metadata": {"entity_id": "admin", "root": "/"}}
]`

func TestParseSessions(t *testing.T) {
	ss, err := parseSessions(2, []byte(clientLS))
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 3 {
		t.Fatalf("%d sessions", len(ss))
	}
	s := ss[0]
	if s.ID != 4272 || s.Rank != 2 || s.Entity != "client.nfsp.vol1" || s.Root() != "/volumes/nfsp/vol1/ffb17d9a" ||
		s.Metadata["uuid"] != "ganesha-store1-0007" || s.Inst != "client.4272 v1:127.0.0.1:0/2599407999" {
		t.Errorf("session %+v", s)
	}
	if _, err := parseSessions(0, []byte("not json")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseRanks(t *testing.T) {
	ranks, err := parseRanks([]byte(`{"mdsmap": {"up": {"mds_1": 4410, "mds_0": 4201}, "in": [0, 1]}, "id": 1}`))
	if err != nil || len(ranks) != 2 || ranks[0] != 0 || ranks[1] != 1 {
		t.Fatalf("ranks %v %v", ranks, err)
	}
	if _, err := parseRanks([]byte(`{"mdsmap": {"up": {}}}`)); err == nil {
		t.Error("no active MDS accepted")
	}
	if _, err := parseRanks([]byte(`{"mdsmap": {"up": {"x": 1}}}`)); err == nil {
		t.Error("bad rank key accepted")
	}
}

// TestScope: the fence takes every session mounted at or below the store's
// paths and nothing else: not a sibling whose name merely starts the same,
// not "/" (an admin), never everybody, and never this holder's own mount.
func TestScope(t *testing.T) {
	sc := Scope{Paths: []string{"/volumes/_nogroup/nfsp-state/95b1", "/volumes/nfsp/"}, Self: "me"}
	for _, c := range []struct {
		root, holder string
		want         bool
	}{
		{"/volumes/nfsp/vol1/ffb17d9a", "", true},
		{"/volumes/nfsp", "", true},
		{"/volumes/_nogroup/nfsp-state/95b1", "", true},
		{"/volumes/_nogroup/nfsp-state/95b1", "other", true},
		{"/volumes/_nogroup/nfsp-state/95b1", "me", false},
		{"/volumes/nfsp2/vol1", "", false},
		{"/volumes", "", false},
		{"/", "", false},
		{"", "", false},
	} {
		s := Session{Metadata: map[string]string{"root": c.root}}
		if c.holder != "" {
			s.Metadata[HolderKey] = c.holder
		}
		if got := sc.Has(s); got != c.want {
			t.Errorf("root %q holder %q: in scope %v, want %v", c.root, c.holder, got, c.want)
		}
	}
	if (Scope{Paths: []string{"/"}}).Has(Session{Metadata: map[string]string{"root": "/x"}}) {
		t.Error("a scope of / took a session")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("got %q", got)
	}
}
