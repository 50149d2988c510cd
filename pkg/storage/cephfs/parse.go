package cephfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The ceph command answers in JSON (--format json). These read the few
// fields this backend needs and reject answers they do not understand, so a
// changed answer fails loudly rather than being read as an empty one.

// subvolumeInfo is what `fs subvolume info` tells.
type subvolumeInfo struct {
	Path  string `json:"path"`
	State string `json:"state"`
	Type  string `json:"type"`
	// Quota is bytes_quota: a number, or "infinite" (read as 0).
	Quota quota `json:"bytes_quota"`
	Used  int64 `json:"bytes_used"`
}

type quota int64

func (q *quota) UnmarshalJSON(data []byte) error {
	var s string
	if json.Unmarshal(data, &s) == nil {
		if s == "infinite" {
			*q = 0
			return nil
		}
		return fmt.Errorf("bytes_quota %q: want a number or \"infinite\"", s)
	}
	var n int64
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("bytes_quota %s: %w", data, err)
	}
	*q = quota(n)
	return nil
}

func parseInfo(out []byte) (subvolumeInfo, error) {
	var info subvolumeInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("read subvolume info: %w", err)
	}
	if !strings.HasPrefix(info.Path, "/") {
		return info, fmt.Errorf("read subvolume info: path %q is not absolute", info.Path)
	}
	return info, nil
}

// parseNames reads a list of {"name": ...}, as `fs subvolume ls` and
// `fs subvolume snapshot ls` print it.
func parseNames(out []byte) ([]string, error) {
	var entries []struct {
		Name string `json:"name"`
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, fmt.Errorf("read list: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Name == "" {
			return nil, errors.New("read list: an entry without a name")
		}
		names = append(names, e.Name)
	}
	return names, nil
}

// parseKey reads the key of entity from `auth get` or `auth get-or-create`,
// which print a list of entities (some releases print one object).
func parseKey(out []byte, entity string) (string, error) {
	type ent struct {
		Entity string `json:"entity"`
		Key    string `json:"key"`
	}
	var list []ent
	if err := json.Unmarshal(out, &list); err != nil {
		var one ent
		if err := json.Unmarshal(out, &one); err != nil {
			return "", fmt.Errorf("read the key of %s: the answer is not JSON", entity)
		}
		list = []ent{one}
	}
	for _, e := range list {
		if e.Entity == entity {
			if e.Key == "" {
				return "", fmt.Errorf("read the key of %s: empty", entity)
			}
			return e.Key, nil
		}
	}
	return "", fmt.Errorf("read the key of %s: not in the answer", entity)
}

// cloneState is what `fs clone status` tells.
type cloneState struct {
	State   string
	Failure string // errno and message of a failed clone
}

// Clone states of the mgr volumes module.
const (
	clonePending    = "pending"
	cloneInProgress = "in-progress"
	cloneComplete   = "complete"
	cloneFailed     = "failed"
	cloneCanceled   = "canceled"
)

func parseCloneStatus(out []byte) (cloneState, error) {
	var s struct {
		Status struct {
			State   string `json:"state"`
			Failure *struct {
				Errno string `json:"errno"`
				Msg   string `json:"error_msg"`
			} `json:"failure"`
		} `json:"status"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return cloneState{}, fmt.Errorf("read clone status: %w", err)
	}
	switch s.Status.State {
	case clonePending, cloneInProgress, cloneComplete, cloneFailed, cloneCanceled:
	default:
		return cloneState{}, fmt.Errorf("read clone status: unknown state %q", s.Status.State)
	}
	st := cloneState{State: s.Status.State}
	if f := s.Status.Failure; f != nil {
		st.Failure = fmt.Sprintf("errno %s: %s", f.Errno, f.Msg)
	}
	return st, nil
}

// parseDataPool reads the first data pool of filesystem fs from `fs ls`:
// where subvolumes store their data unless a layout says otherwise.
func parseDataPool(out []byte, fs string) (string, error) {
	var list []struct {
		Name      string   `json:"name"`
		DataPools []string `json:"data_pools"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return "", fmt.Errorf("read fs ls: %w", err)
	}
	for _, f := range list {
		if f.Name == fs {
			if len(f.DataPools) == 0 {
				return "", fmt.Errorf("filesystem %s has no data pool", fs)
			}
			return f.DataPools[0], nil
		}
	}
	return "", fmt.Errorf("no filesystem %s in this cluster", fs)
}

// parseActiveMDS reads `fs dump`: nil when filesystem fs has an MDS
// up:active, or up:clientreplay: an MDS restarted under a ganesha that
// stopped waits there for ganesha's sessions to be reclaimed, which only
// ganesha serving its exports again does.
func parseActiveMDS(out []byte, fs string) error {
	var dump struct {
		Filesystems []struct {
			MDSMap struct {
				Name string `json:"fs_name"`
				Info map[string]struct {
					State string `json:"state"`
				} `json:"info"`
			} `json:"mdsmap"`
		} `json:"filesystems"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		return fmt.Errorf("read fs dump: %w", err)
	}
	for _, f := range dump.Filesystems {
		if f.MDSMap.Name != fs {
			continue
		}
		for _, mds := range f.MDSMap.Info {
			if mds.State == "up:active" || mds.State == "up:clientreplay" {
				return nil
			}
		}
		return fmt.Errorf("filesystem %s has no active MDS", fs)
	}
	return fmt.Errorf("no filesystem %s in this cluster", fs)
}

// poolSpace is a pool's share of the cluster, from `ceph df`: what it
// stores and what it can still take, both in bytes of user data (after
// replication).
type poolSpace struct {
	Stored, MaxAvail int64
}

func parseDF(out []byte, pool string) (poolSpace, error) {
	var df struct {
		Pools []struct {
			Name  string `json:"name"`
			Stats struct {
				Stored   json.Number `json:"stored"`
				MaxAvail json.Number `json:"max_avail"`
			} `json:"stats"`
		} `json:"pools"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&df); err != nil {
		return poolSpace{}, fmt.Errorf("read ceph df: %w", err)
	}
	for _, p := range df.Pools {
		if p.Name != pool {
			continue
		}
		stored, err1 := strconv.ParseInt(p.Stats.Stored.String(), 10, 64)
		avail, err2 := strconv.ParseInt(p.Stats.MaxAvail.String(), 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return poolSpace{}, fmt.Errorf("read ceph df of pool %s: %w", pool, err)
		}
		return poolSpace{Stored: stored, MaxAvail: avail}, nil
	}
	return poolSpace{}, fmt.Errorf("ceph df has no pool %s", pool)
}
