package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Ceph runs the ceph command-line tool against one cluster as one user.
type Ceph struct {
	Binary  string // default "ceph"
	Conf    string // -c
	Keyring string // --keyring; "" = what the conf says
	User    string // -n client.<User>; "" = admin
	FS      string // the CephFS file system name
	// Timeout bounds every call; default 30s.
	Timeout time.Duration
}

// args are the options naming the cluster and the user, which ceph-fuse
// takes too.
func (c Ceph) args() []string {
	var a []string
	if c.Conf != "" {
		a = append(a, "-c", c.Conf)
	}
	if c.Keyring != "" {
		a = append(a, "--keyring", c.Keyring)
	}
	if c.User != "" {
		a = append(a, "-n", "client."+c.User)
	}
	return a
}

// run runs one ceph command and returns its standard output.
func (c Ceph) run(ctx context.Context, extra ...string) ([]byte, error) {
	bin := c.Binary
	if bin == "" {
		bin = "ceph"
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A monitor that does not answer must not hold the fence for ever.
	args := append(c.args(), "--connect-timeout", "15")
	cmd := exec.CommandContext(ctx, bin, append(args, extra...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ceph %s: %w: %s", strings.Join(extra, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Session is one client session of an MDS, as `client ls` reports it.
type Session struct {
	Rank     int
	ID       uint64
	Entity   string // client.<name>
	Inst     string // e.g. client.4272 v1:127.0.0.1:0/2599407999
	Metadata map[string]string
}

// Root is the path the client mounted.
func (s Session) Root() string { return s.Metadata["root"] }

func (s Session) String() string {
	return fmt.Sprintf("%s (id %d, rank %d, root %s, host %s, pid %s)", s.Entity, s.ID, s.Rank, s.Root(),
		s.Metadata["hostname"], s.Metadata["pid"])
}

// Ranks lists the active MDS ranks of the file system.
func (c Ceph) Ranks(ctx context.Context) ([]int, error) {
	out, err := c.run(ctx, "fs", "get", c.FS, "--format=json")
	if err != nil {
		return nil, err
	}
	return parseRanks(out)
}

func parseRanks(out []byte) ([]int, error) {
	var fs struct {
		MDSMap struct {
			Up map[string]uint64 `json:"up"` // "mds_<rank>": gid
		} `json:"mdsmap"`
	}
	if err := json.Unmarshal(out, &fs); err != nil {
		return nil, fmt.Errorf("parse fs get: %w", err)
	}
	var ranks []int
	for k := range fs.MDSMap.Up {
		var r int
		if _, err := fmt.Sscanf(k, "mds_%d", &r); err != nil {
			return nil, fmt.Errorf("parse fs get: rank key %q", k)
		}
		ranks = append(ranks, r)
	}
	if len(ranks) == 0 {
		return nil, fmt.Errorf("file system has no active MDS")
	}
	sort.Ints(ranks)
	return ranks, nil
}

// Sessions lists the client sessions of the given MDS ranks (see Ranks).
func (c Ceph) Sessions(ctx context.Context, ranks []int) ([]Session, error) {
	var all []Session
	for _, r := range ranks {
		out, err := c.run(ctx, "tell", fmt.Sprintf("mds.%s:%d", c.FS, r), "client", "ls", "--format=json")
		if err != nil {
			return nil, err
		}
		ss, err := parseSessions(r, out)
		if err != nil {
			return nil, err
		}
		all = append(all, ss...)
	}
	return all, nil
}

func parseSessions(rank int, out []byte) ([]Session, error) {
	var raw []struct {
		ID     uint64 `json:"id"`
		Inst   string `json:"inst"`
		Entity struct {
			Name struct {
				Type string `json:"type"`
				Num  uint64 `json:"num"`
			} `json:"name"`
		} `json:"entity"`
		Metadata map[string]any `json:"client_metadata"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("parse client ls: %w", err)
	}
	ss := make([]Session, 0, len(raw))
	for _, r := range raw {
		s := Session{Rank: rank, ID: r.ID, Inst: r.Inst, Metadata: map[string]string{}}
		for k, v := range r.Metadata {
			if str, ok := v.(string); ok {
				s.Metadata[k] = str
			}
		}
		s.Entity = "client." + s.Metadata["entity_id"]
		ss = append(ss, s)
	}
	return ss, nil
}

// Evict evicts one session. The MDS blocklists the client in the OSD map
// (mds_session_blocklist_on_evict, on by default) before it answers, so once
// Evict returns the client can neither reach the MDS nor write to an OSD;
// its file locks are released.
func (c Ceph) Evict(ctx context.Context, s Session) error {
	_, err := c.run(ctx, "tell", fmt.Sprintf("mds.%s:%d", c.FS, s.Rank), "client", "evict", fmt.Sprintf("id=%d", s.ID))
	return err
}

// SubvolumePath creates (if need be) subvolume name in group and returns
// its path; group "" is the default group.
func (c Ceph) SubvolumePath(ctx context.Context, name, group string) (string, error) {
	g := []string{}
	if group != "" {
		g = []string{"--group_name", group}
	}
	// Idempotent: an existing subvolume is left as it is.
	if _, err := c.run(ctx, append([]string{"fs", "subvolume", "create", c.FS, name}, g...)...); err != nil {
		return "", err
	}
	out, err := c.run(ctx, append([]string{"fs", "subvolume", "getpath", c.FS, name}, g...)...)
	if err != nil {
		return "", err
	}
	p := strings.TrimSpace(string(out))
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("subvolume getpath %s: unexpected answer %q", name, p)
	}
	return p, nil
}
