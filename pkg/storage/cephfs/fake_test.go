package cephfs

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeCeph answers the ceph commands this backend runs the way the mgr
// volumes module of Ceph 16 does (its errnos, states and JSON), keeping a
// little cluster in memory. It exists for unit tests of the backend's own
// logic (idempotency, undo, ordering); test/cephfs runs the real cluster.
type fakeCeph struct {
	mu      sync.Mutex
	calls   [][]string
	subvols map[string]*fakeSubvol
	users   map[string]map[string]string // entity -> caps
	nextID  int
	// clonePolls is how many status polls a clone stays in progress.
	clonePolls int
	// cloneFails makes every clone end failed.
	cloneFails bool
	// fail injects an error into the first command starting with a key.
	fail map[string]syscall.Errno
}

type fakeSubvol struct {
	meta      map[string]string
	path      string
	quota     int64
	used      int64
	state     string
	snaps     []string
	pollsLeft int
	mode      string
	uid, gid  string
}

func newFakeCeph() *fakeCeph {
	return &fakeCeph{subvols: map[string]*fakeSubvol{}, users: map[string]map[string]string{}, fail: map[string]syscall.Errno{}}
}

// newTestBackend is a configured backend on a fake cluster.
func newTestBackend(t *testing.T) (*Backend, *fakeCeph) {
	t.Helper()
	b, err := New(Options{Conf: "/etc/ceph/ceph.conf", Group: "g", PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeCeph()
	b.ceph = f
	return b, f
}

func errno(args []string, e syscall.Errno) error {
	return &CommandError{Args: args, Errno: e, Stderr: "Error " + errnoName(e) + ": fake"}
}

func errnoName(e syscall.Errno) string {
	for n, v := range errnoNames {
		if v == e {
			return n
		}
	}
	return strconv.Itoa(int(e))
}

// flags splits "--name value" pairs (and bare --force) from positional args.
func flags(args []string) (pos []string, named map[string]string) {
	named = map[string]string{}
	for i := 0; i < len(args); i++ {
		if k, ok := strings.CutPrefix(args[i], "--"); ok {
			if k == "force" {
				named[k] = "true"
				continue
			}
			named[k] = args[i+1]
			i++
			continue
		}
		pos = append(pos, args[i])
	}
	return pos, named
}

func (f *fakeCeph) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, strings.Join(c, " "))
	}
	return out
}

func (f *fakeCeph) count(prefix string) int {
	n := 0
	for _, c := range f.commands() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeCeph) run(ctx context.Context, args ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &CommandError{Args: args, Err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(args))
	line := strings.Join(args, " ")
	for prefix, e := range f.fail {
		if strings.HasPrefix(line, prefix) {
			delete(f.fail, prefix)
			return nil, errno(args, e)
		}
	}
	pos, named := flags(args)
	if len(pos) >= 2 && pos[0] == "auth" {
		return f.auth(args, pos)
	}
	if len(pos) >= 1 && pos[0] == "df" {
		return []byte(`{"stats":{},"pools":[{"name":"cephfs.cephfs.meta","stats":{"stored":1,"max_avail":5}},{"name":"cephfs.cephfs.data","stats":{"stored":1000,"max_avail":9000}}]}`), nil
	}
	if len(pos) == 2 && pos[0] == "fs" && pos[1] == "ls" {
		return []byte(`[{"name":"cephfs","metadata_pool":"cephfs.cephfs.meta","data_pools":["cephfs.cephfs.data"]}]`), nil
	}
	if named["group_name"] != "" && named["group_name"] != "g" {
		return nil, fmt.Errorf("fake: group %q", named["group_name"])
	}
	sub := func() (*fakeSubvol, error) {
		s, ok := f.subvols[pos[4]]
		if !ok {
			return nil, errno(args, syscall.ENOENT)
		}
		return s, nil
	}
	switch verb := strings.Join(pos[:2], " "); {
	case verb == "fs subvolumegroup":
		return nil, nil
	case verb == "fs clone":
		s, err := sub()
		if err != nil {
			return nil, err
		}
		if pos[2] == "cancel" {
			if s.state == cloneComplete {
				return nil, errno(args, syscall.EINVAL)
			}
			s.state = cloneCanceled
			return nil, nil
		}
		if s.pollsLeft > 0 {
			s.pollsLeft--
			if s.pollsLeft == 0 {
				s.state = cloneComplete
				if f.cloneFails {
					s.state = cloneFailed
				}
			}
		}
		st := map[string]any{"state": s.state}
		if s.state == cloneFailed {
			st["failure"] = map[string]string{"errno": "28", "error_msg": "no space"}
		}
		return json.Marshal(map[string]any{"status": st})
	}
	if pos[1] != "subvolume" {
		return nil, fmt.Errorf("fake: unknown command %v", args)
	}
	switch pos[2] {
	case "ls":
		var out []map[string]string
		for _, n := range mapsKeys(f.subvols) {
			out = append(out, map[string]string{"name": n})
		}
		return json.Marshal(out)
	case "create":
		if len("_g:"+pos[4]+".meta") > 255 {
			return nil, fmt.Errorf("fake: error in unlink: /volumes/_g:%s.meta: File name too long [Errno 36]", pos[4])
		}
		if _, ok := f.subvols[pos[4]]; ok {
			return nil, fmt.Errorf("fake: subvolume create on an existing subvolume resets its attributes; the backend must never do that")
		}
		f.nextID++
		q, _ := strconv.ParseInt(named["size"], 10, 64)
		f.subvols[pos[4]] = &fakeSubvol{path: fmt.Sprintf("/volumes/g/%s/uuid-%d", pos[4], f.nextID), quota: q, state: cloneComplete,
			mode: named["mode"], uid: named["uid"], gid: named["gid"]}
		return nil, nil
	case "info":
		s, err := f.subvolAt(args, pos[4])
		if err != nil {
			return nil, err
		}
		if s.state != cloneComplete {
			return nil, errno(args, syscall.EAGAIN)
		}
		var q any = s.quota
		if s.quota == 0 {
			q = "infinite"
		}
		return json.Marshal(map[string]any{"path": s.path, "state": s.state, "type": "subvolume", "bytes_quota": q, "bytes_used": s.used, "uid": 0})
	case "resize":
		s, err := f.subvolAt(args, pos[4])
		if err != nil {
			return nil, err
		}
		s.quota, _ = strconv.ParseInt(pos[5], 10, 64)
		return []byte(`[{"bytes_used": 0}, {"bytes_quota": ` + pos[5] + `}, {"bytes_pcent": "0.00"}]`), nil
	case "rm":
		s, err := f.subvolAt(args, pos[4])
		if err != nil {
			if named["force"] != "" {
				return nil, nil
			}
			return nil, err
		}
		if s.state != cloneComplete && (named["force"] == "" || s.state == cloneInProgress || s.state == clonePending) {
			return nil, errno(args, syscall.EAGAIN)
		}
		if len(s.snaps) > 0 {
			return nil, errno(args, syscall.ENOTEMPTY)
		}
		for _, o := range f.subvols {
			if o.state != cloneComplete && o.pollsLeft > 0 && strings.Contains(o.path, "from:"+pos[4]+"@") {
				return nil, errno(args, syscall.EAGAIN)
			}
		}
		delete(f.subvols, pos[4])
		return nil, nil
	case "metadata":
		s, err := f.subvolAt(args, pos[5])
		if err != nil {
			return nil, err
		}
		if pos[3] == "set" {
			if s.meta == nil {
				s.meta = map[string]string{}
			}
			s.meta[pos[6]] = pos[7]
			return nil, nil
		}
		v, ok := s.meta[pos[6]]
		if !ok {
			return nil, errno(args, syscall.ENOENT)
		}
		return []byte(v), nil
	case "snapshot":
		s, err := f.subvolAt(args, pos[5])
		if err != nil {
			return nil, err
		}
		switch pos[3] {
		case "ls":
			var out []map[string]string
			for _, n := range s.snaps {
				out = append(out, map[string]string{"name": n})
			}
			return json.Marshal(out)
		case "create":
			if slices.Contains(s.snaps, pos[6]) {
				return nil, errno(args, syscall.EEXIST)
			}
			s.snaps = append(s.snaps, pos[6])
			return nil, nil
		case "rm":
			i := slices.Index(s.snaps, pos[6])
			if i < 0 {
				return nil, errno(args, syscall.ENOENT)
			}
			for _, o := range f.subvols {
				if o.state != cloneComplete && strings.HasSuffix(o.path, "from:"+pos[5]+"@"+pos[6]) {
					return nil, errno(args, syscall.EAGAIN)
				}
			}
			s.snaps = slices.Delete(s.snaps, i, i+1)
			return nil, nil
		case "clone":
			if !slices.Contains(s.snaps, pos[6]) {
				return nil, errno(args, syscall.ENOENT)
			}
			if _, ok := f.subvols[pos[7]]; ok {
				return nil, errno(args, syscall.EEXIST)
			}
			if named["target_group_name"] != "g" {
				return nil, fmt.Errorf("fake: clone to group %q", named["target_group_name"])
			}
			f.nextID++
			if len("_g:"+pos[7]+".meta") > 255 {
				return nil, fmt.Errorf("fake: clone name %s too long", pos[7])
			}
			f.subvols[pos[7]] = &fakeSubvol{path: fmt.Sprintf("/volumes/g/%s/uuid-%d#from:%s@%s", pos[7], f.nextID, pos[5], pos[6]),
				quota: s.quota, used: s.used, state: clonePending, pollsLeft: max(f.clonePolls, 1), mode: s.mode, uid: s.uid, gid: s.gid}
			return nil, nil
		}
	}
	return nil, fmt.Errorf("fake: unknown command %v", args)
}

func (f *fakeCeph) subvolAt(args []string, name string) (*fakeSubvol, error) {
	s, ok := f.subvols[name]
	if !ok {
		return nil, errno(args, syscall.ENOENT)
	}
	return s, nil
}

func (f *fakeCeph) auth(args, pos []string) ([]byte, error) {
	entity := pos[2]
	switch pos[1] {
	case "get-or-create":
		caps := map[string]string{}
		for i := 3; i+1 < len(pos); i += 2 {
			caps[pos[i]] = pos[i+1]
		}
		if old, ok := f.users[entity]; ok {
			for k, v := range caps {
				if old[k] != v {
					return nil, errno(args, syscall.EINVAL)
				}
			}
		} else {
			f.users[entity] = caps
		}
		return json.Marshal([]map[string]string{{"entity": entity, "key": fakeKey(entity)}})
	case "get":
		caps, ok := f.users[entity]
		if !ok {
			return nil, errno(args, syscall.ENOENT)
		}
		return json.Marshal([]map[string]any{{"entity": entity, "key": fakeKey(entity), "caps": caps}})
	case "del":
		if _, ok := f.users[entity]; !ok {
			return nil, errno(args, syscall.ENOENT)
		}
		delete(f.users, entity)
		return nil, nil
	}
	return nil, fmt.Errorf("fake: unknown command %v", args)
}

func fakeKey(entity string) string { return "AQB" + strconv.Itoa(len(entity)) + "fakekey==" }

func mapsKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
