package mysql

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procScan reads every process's /proc/PID/cmdline while a cluster lives
// and records any that contains a secret of the cluster's Secret, and
// every mariadb-backup --backup it sees (which donor, by its option file).
type procScan struct {
	secrets map[string]string
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	rounds  int
	seen    map[int]bool // distinct PIDs scanned
	leaks   []string
	backups map[string]map[int]bool // pod directory name -> PIDs of mariadb-backup --backup
}

// needles are what must never appear in argv: every password, and a
// distinctive piece of the clone key's body.
func (s *procScan) needles() map[string]string {
	n := map[string]string{}
	for k, v := range s.secrets {
		if k == "clone.key" {
			lines := strings.Split(strings.TrimSpace(v), "\n")
			if len(lines) > 2 {
				n[k] = strings.TrimSpace(lines[1])
			}
			continue
		}
		if k == "clone.crt" {
			continue // public
		}
		n[k] = v
	}
	return n
}

func startProcScan(t *testing.T, secrets map[string]string) *procScan {
	s := &procScan{secrets: secrets, stop: make(chan struct{}), done: make(chan struct{}),
		seen: map[int]bool{}, backups: map[string]map[int]bool{}}
	needles := s.needles()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s.round(needles)
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Logf("FIGURE argv scan: %d scans of /proc/*/cmdline, %d distinct processes, %d with a secret", s.rounds, len(s.seen), len(s.leaks))
		if s.rounds == 0 {
			t.Error("the argv scan never ran: the no-secret check would be vacuous")
		}
		for _, l := range s.leaks {
			t.Errorf("secret in a command line: %s", l)
		}
	})
	return s
}

func (s *procScan) round(needles map[string]string) {
	pids, err := listPIDs()
	if err != nil {
		return
	}
	for _, pid := range pids {
		raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		s.mu.Lock()
		s.seen[pid] = true
		for k, v := range needles {
			if v != "" && bytes.Contains(raw, []byte(v)) {
				s.leaks = append(s.leaks, k+" in pid "+strconv.Itoa(pid)+": "+strings.Join(args, " "))
			}
		}
		if filepath.Base(args[0]) == "mariadb-backup" && strings.Contains(string(raw), "--backup") {
			for _, a := range args {
				// --defaults-file=<pods>/<pod>/tmp/...: the donor pod.
				if rest, ok := strings.CutPrefix(a, "--defaults-file="); ok {
					parts := strings.Split(rest, string(filepath.Separator))
					for i, p := range parts {
						if p == "pods" && i+1 < len(parts) {
							if s.backups[parts[i+1]] == nil {
								s.backups[parts[i+1]] = map[int]bool{}
							}
							s.backups[parts[i+1]][pid] = true
						}
					}
				}
			}
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.rounds++
	s.mu.Unlock()
}

// listPIDs lists the processes in /proc.
func listPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// backupCount is how many mariadb-backup --backup processes have run on pod.
func (s *procScan) backupCount(pod string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.backups[pod])
}

// makeCloneCert runs the manifest header's openssl command in dir and
// returns the certificate and key.
func makeCloneCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "clone.crt"), filepath.Join(dir, "clone.key")
	cmd := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-days", "3650", "-subj", "/CN=mysql-clone", "-addext", "subjectAltName=DNS:mysql-clone",
		"-keyout", key, "-out", crt)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	c, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}
