package mysql

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// execCommand puts every child in its own process group (so that it and its
// children can be killed together) and has the kernel kill it if the test
// process dies.
func execCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// proc is a tracked background process (group).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the process group, as a crashing node would, and
// reaps the leader.
func (p *proc) kill() {
	if p.alive() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
	// Children that left the group's leader behind (socat's forks) die too.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

var requiredBinaries = []string{"bash", "mariadbd", "mariadb", "mariadb-admin", "mariadb-backup", "mbstream", "mariadb-install-db", "socat", "timeout", "flock", "openssl"}

// requireBinaries fails when the tools are missing (hack/install-deps.sh
// installs them); only in -short mode does it skip instead.
func requireBinaries(t *testing.T) {
	t.Helper()
	for _, b := range requiredBinaries {
		if _, err := exec.LookPath(b); err != nil {
			if testing.Short() {
				t.Skipf("-short and %s not found: %v", b, err)
			}
			t.Fatalf("%s not found (%v): run hack/install-deps.sh", b, err)
		}
	}
}

// cluster is a StatefulSet "mysql" simulated with processes: pod mysql-N is
// a directory tree plus the loopback address 127.0.0.(ipBase+N).
type cluster struct {
	t        *testing.T // the running (sub)test, for failures
	top      *testing.T // the test that owns the cluster, for cleanups
	root     string
	export   string   // the provisioner's store
	volumes  *volumes // provisions each pod's claim in export
	scripts  map[string]string
	topology string // the ConfigMap mysql-topology, mounted in every pod
	label    string // which pod carries role=primary (mysql-primary follows it)
	hooks    string
	ipBase   int
	secrets  map[string]string
	members  []string

	mu     sync.Mutex
	pods   map[string]*pod
	procs  []*proc
	groups map[int]bool // process groups we started (pgid = leader's pid)
	scan   *procScan
}

type pod struct {
	name    string
	ord     int
	ip      string
	dir     string
	datadir string
	socket  string
	env     []string
	mysqld  *proc
	agent   *proc
}

const hooksScript = `# test/mysql: stand-ins for DNS, the Kubernetes API and kubectl exec.
# TEST_UNREACHABLE lists pods that neither the network nor kubectl exec
# reaches (a partition): their name resolves to an address where nothing
# listens, and pod_run fails.
unreachable() { [[ " ${TEST_UNREACHABLE:-} " == *" $1 "* ]]; }
peer_host() {
  local o
  if unreachable "$1"; then printf '127.0.0.98\n'; return; fi
  for o in ${TEST_PEER_OVERRIDE:-}; do
    if [[ ${o%%=*} == "$1" ]]; then printf '%s\n' "${o#*=}"; return; fi
  done
  printf '127.0.0.%d\n' $((TEST_IP_BASE + ${1##*-}))
}
list_members() { printf '%s\n' $TEST_MEMBERS; }
pod_run() {
  local pod=$1 t=$2
  shift 2
  [[ -f $TEST_PODS/$pod/pod.env ]] || { echo "pod $pod does not exist" >&2; return 1; }
  unreachable "$pod" && { echo "pod $pod: unreachable (partitioned)" >&2; return 1; }
  ( set -a; . "$TEST_PODS/$pod/pod.env"; set +a; exec timeout "$t" bash "$TEST_PODS/$pod/configmap/$1" "${@:2}" )
}
# The API server's ConfigMap: a version counter and the kubelet's atomic
# projection (..data swapped by one rename), under one lock.
record_get() {
  (
    flock 9
    if [[ -f $TEST_RECORD_DIR/primary ]]; then
      cat "$TEST_RECORD_DIR/.version"
      for k in primary epoch owner; do printf '%s\n' "$(<"$TEST_RECORD_DIR/$k")"; done
    else
      printf '\nmysql-0\n0\n\n'
    fi
  ) 9>"$TEST_RECORD_DIR/.lock"
}
record_cas() {
  (
    flock 9
    cur=""
    [[ -f $TEST_RECORD_DIR/primary ]] && cur=$(<"$TEST_RECORD_DIR/.version")
    [[ $cur == "$1" ]] || { echo "Operation cannot be fulfilled: the object has been modified (version $cur, not '$1')" >&2; exit 1; }
    v=$((${cur:-0} + 1))
    d=$TEST_RECORD_DIR/..v$v
    mkdir "$d"
    printf '%s' "$2" >"$d/primary"
    printf '%s' "$3" >"$d/epoch"
    printf '%s' "$4" >"$d/owner"
    ln -sfn "..v$v" "$TEST_RECORD_DIR/..data_tmp"
    mv -T "$TEST_RECORD_DIR/..data_tmp" "$TEST_RECORD_DIR/..data"
    for k in primary epoch owner; do [[ -L $TEST_RECORD_DIR/$k ]] || ln -sfn "..data/$k" "$TEST_RECORD_DIR/$k"; done
    printf '%s\n' "$v" >"$TEST_RECORD_DIR/.version"
    printf '%s' "$v"
  ) 9>"$TEST_RECORD_DIR/.lock"
}
set_label() {
  printf '%s' "$1" >"$TEST_LABEL_FILE.tmp" && mv -f "$TEST_LABEL_FILE.tmp" "$TEST_LABEL_FILE"
}
`

// testOverrides shrinks mariadbd for the test machine (CI: 2 cores, many
// packages at once). It is included after the shipped config, which it
// never edits; durability settings stay as shipped.
const testOverrides = `[mysqld]
innodb_buffer_pool_size=24M
innodb_log_file_size=16M
innodb_log_buffer_size=2M
performance_schema=OFF
innodb_use_native_aio=OFF
max_connections=40
thread_cache_size=4
`

func newCluster(t *testing.T, ipBase int, members ...string) *cluster {
	t.Helper()
	requireBinaries(t)
	root := t.TempDir()
	c := &cluster{
		t:        t,
		top:      t,
		root:     root,
		export:   filepath.Join(root, "export"),
		scripts:  loadManifest(t).scripts(t),
		topology: filepath.Join(root, "topology"),
		label:    filepath.Join(root, "role-primary"),
		hooks:    filepath.Join(root, "hooks.sh"),
		ipBase:   ipBase,
		secrets:  map[string]string{},
		members:  members,
		pods:     map[string]*pod{},
		groups:   map[int]bool{},
	}
	// Processes orphaned when we kill a group (socat's forks, say) are
	// re-parented to us rather than to PID 1, which on some test machines
	// never reaps them; stopAll reaps them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	for _, d := range []string{c.export, c.topology, filepath.Join(root, "pods"), filepath.Join(root, "operator", "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"root-password", "replication-password", "backup-password", "healthcheck-password", "app-password"} {
		b := make([]byte, 12)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		c.secrets[k] = hex.EncodeToString(b)
	}
	// The clone certificate, made as the manifest header tells operators to.
	c.secrets["clone.crt"], c.secrets["clone.key"] = makeCloneCert(t, filepath.Join(root, "clone-cert"))
	c.scan = startProcScan(t, c.secrets)
	c.volumes = newVolumes(t, c.export)
	mustWrite(t, c.hooks, hooksScript, 0o644)
	mustWrite(t, filepath.Join(root, "test-overrides.cnf"), testOverrides, 0o644)
	// The operator's copy of the scripts, as the manifest header tells
	// operators to extract them.
	for k, v := range c.scripts {
		mustWrite(t, filepath.Join(root, "operator", k), v, 0o555)
	}
	t.Cleanup(c.stopAll)
	return c
}

func mustWrite(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	c.reapOrphans()
}

// reapOrphans kills and reaps the processes of our groups whose leader is
// gone and that were re-parented to this process. Only our groups: the
// test binary's other children are left to their owners.
func (c *cluster) reapOrphans() {
	c.mu.Lock()
	groups := make(map[int]bool, len(c.groups))
	for g := range c.groups {
		groups[g] = true
	}
	c.mu.Unlock()
	self := os.Getpid()
	pids, err := listPIDs()
	if err != nil {
		c.t.Logf("reaping orphans: %v", err)
		return
	}
	for _, pid := range pids {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		pgrp, _ := strconv.Atoi(fields[2])
		if ppid != self || !groups[pgrp] {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			c.t.Logf("reaping orphan %d: %v", pid, err)
		}
	}
}

func (c *cluster) addGroup(pgid int) {
	c.mu.Lock()
	c.groups[pgid] = true
	c.mu.Unlock()
}

// ip is pod name's loopback address. c.ipBase never changes, so the
// writer goroutines may call it.
func (c *cluster) ip(name string) string {
	n, err := strconv.Atoi(name[strings.LastIndex(name, "-")+1:])
	if err != nil {
		// Names come from the record the scripts write; a bad one is a
		// script bug, reported by the address that connects nowhere.
		return "127.0.0.255"
	}
	return fmt.Sprintf("127.0.0.%d", c.ipBase+n)
}

// pod creates (once) the directories of a pod: the ConfigMap and the Secret
// as files, an emptyDir for conf.d, /run/mysqld and /tmp, and the volume.
func (c *cluster) pod(name string) *pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pods[name]; ok {
		return p
	}
	t := c.t
	dir := filepath.Join(c.root, "pods", name)
	p := &pod{name: name, ip: c.ip(name), dir: dir}
	p.ord, _ = strconv.Atoi(name[strings.LastIndex(name, "-")+1:])
	// The pod's view of the record: normally the shared projection; a
	// partition freezes it (see partition).
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(c.topology, filepath.Join(dir, "topology")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"configmap", "secret", "conf.d", "run", "log", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	// The pod's datadir is its claim's volume, carved by the provisioner.
	p.datadir = c.volumes.claim(t, name)
	p.socket = filepath.Join(dir, "run", "mysqld.sock")
	for k, v := range c.scripts {
		mustWrite(t, filepath.Join(dir, "configmap", k), v, 0o555)
	}
	for k, v := range c.secrets {
		mustWrite(t, filepath.Join(dir, "secret", k), v, 0o440)
	}
	// The image's /etc/mysql/my.cnf stand-in: per-pod paths and address,
	// then conf.d (written by init-config.sh), then the test's overrides.
	mustWrite(t, filepath.Join(dir, "my.cnf"), fmt.Sprintf(`[client-server]
socket=%[1]s/run/mysqld.sock
port=3306
[mysqld]
user=root
datadir=%[2]s
bind-address=%[3]s
pid-file=%[1]s/run/mysqld.pid
log-error=%[1]s/log/error.log
tmpdir=%[1]s/tmp
!includedir %[1]s/conf.d
!include %[4]s/test-overrides.cnf
`, dir, p.datadir, p.ip, c.root), 0o644)
	vars := [][2]string{
		{"HOSTNAME", name},
		{"DATADIR", p.datadir},
		{"CONF_DIR", filepath.Join(dir, "conf.d")},
		{"TOPOLOGY_DIR", filepath.Join(dir, "topology")},
		{"SECRET_DIR", filepath.Join(dir, "secret")},
		{"SOCKET", p.socket},
		{"MYSQLD_DEFAULTS_FILE", filepath.Join(dir, "my.cnf")},
		{"CLONE_BIND", p.ip},
		{"TMPDIR", filepath.Join(dir, "tmp")},
		{"RECONCILE_INTERVAL", "1"},
		{"PREPARE_MEMORY", "32M"},
		{"PEER_PROBE_MAX", "4"},
		{"SELF_FENCE_AFTER", "3"},
		{"CLONE_HANDSHAKE_TIMEOUT", "2"},
		{"RECORD_WAIT", "20"},
	}
	var envFile strings.Builder
	for _, kv := range vars {
		p.env = append(p.env, kv[0]+"="+kv[1])
		fmt.Fprintf(&envFile, "%s='%s'\n", kv[0], kv[1])
	}
	mustWrite(t, filepath.Join(dir, "pod.env"), envFile.String(), 0o644)
	c.pods[name] = p
	return p
}

// baseEnv is the environment every script gets: the hooks and what they
// need, and nothing of the test runner's own environment but PATH.
func (c *cluster) baseEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"LANG=C",
		"HOME=" + c.root,
		"MYSQL_HOOKS=" + c.hooks,
		"TEST_IP_BASE=" + strconv.Itoa(c.ipBase),
		"TEST_PODS=" + filepath.Join(c.root, "pods"),
		"TEST_MEMBERS=" + strings.Join(c.members, " "),
		"TEST_LABEL_FILE=" + c.label,
		"TEST_RECORD_DIR=" + c.topology,
		"TOPOLOGY_DIR=" + c.topology,
	}
}

// result of a script run.
type result struct {
	stdout, stderr string
	err            error
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// run runs a ConfigMap script as pod p would (p == nil: as the operator,
// from the extracted copy), with a deadline after which its whole process
// group is killed.
func (c *cluster) run(p *pod, timeout time.Duration, extraEnv []string, script string, args ...string) result {
	dir := filepath.Join(c.root, "operator")
	env := append(c.baseEnv(), "TMPDIR="+filepath.Join(dir, "tmp"))
	if p != nil {
		dir = filepath.Join(p.dir, "configmap")
		env = append(env, p.env...)
	}
	env = append(env, extraEnv...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		c.addGroup(cmd.Process.Pid)
		err = cmd.Wait()
	}
	if cmd.Process != nil {
		// Whatever the script left in its group (it should leave nothing).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", script, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), err: err, took: time.Since(start)}
}

// start launches a tracked background process for pod p, logging to a file.
func (c *cluster) start(p *pod, name string, extraEnv []string, args ...string) *proc {
	t := c.t
	cmd := execCommand(args[0], args[1:]...)
	cmd.Env = append(append(c.baseEnv(), p.env...), extraEnv...)
	logf, err := os.OpenFile(filepath.Join(p.dir, "log", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s of %s: %v", name, p.name, err)
	}
	c.addGroup(cmd.Process.Pid)
	pr := &proc{name: p.name + "/" + name, cmd: cmd, done: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, pr)
	c.mu.Unlock()
	return pr
}

// initPod runs the two init containers.
func (c *cluster) initPod(p *pod, extraEnv ...string) (result, result) {
	ic := c.run(p, time.Minute, extraEnv, "init-config.sh")
	if ic.err != nil {
		return ic, result{err: errors.New("not run")}
	}
	return ic, c.run(p, 3*time.Minute, extraEnv, "clone.sh")
}

// startServer starts mariadbd and the agent and waits for the startup probe.
func (c *cluster) startServer(p *pod) {
	t := c.t
	t.Helper()
	p.mysqld = c.start(p, "mariadbd", nil, "mariadbd", "--defaults-file="+filepath.Join(p.dir, "my.cnf"))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if r := c.run(p, 10*time.Second, nil, "probe-live.sh"); r.err == nil {
			break
		}
		if !p.mysqld.alive() || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(p.dir, "log", "error.log"))
			t.Fatalf("%s: mariadbd did not start (%v):\n%s", p.name, p.mysqld.err, tail(string(log), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.startAgent(p)
}

// startAgent starts the sidecar and waits for its startup probe.
func (c *cluster) startAgent(p *pod) {
	t := c.t
	t.Helper()
	p.agent = c.start(p, "agent", nil, "bash", filepath.Join(p.dir, "configmap", "agent.sh"))
	deadline := time.Now().Add(time.Minute)
	for {
		r := c.run(p, 10*time.Second, nil, "probe-agent.sh")
		if r.err == nil {
			return
		}
		if !p.agent.alive() || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(p.dir, "log", "agent.log"))
			t.Fatalf("%s: agent not started: %s\nagent log:\n%s", p.name, r, tail(string(log), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startPod is a pod's whole start: init containers, then the containers.
func (c *cluster) startPod(p *pod) (clone result) {
	t := c.t
	t.Helper()
	ic, cl := c.initPod(p)
	if ic.err != nil || cl.err != nil {
		t.Fatalf("%s: init containers failed:\ninit-config: %s\nclone: %s", p.name, ic, cl)
	}
	c.startServer(p)
	return cl
}

// crash kills a pod's containers with SIGKILL, like a node failure.
func (c *cluster) crash(p *pod) {
	p.agent.kill()
	p.mysqld.kill()
}

// waitReady polls the readiness probe as the kubelet would.
func (c *cluster) waitReady(p *pod, timeout time.Duration) time.Duration {
	t := c.t
	t.Helper()
	start := time.Now()
	var last result
	for time.Since(start) < timeout {
		if last = c.run(p, 10*time.Second, nil, "probe-ready.sh"); last.err == nil {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	agentLog, _ := os.ReadFile(filepath.Join(p.dir, "log", "agent.log"))
	t.Fatalf("%s not Ready after %v: %s\nagent log:\n%s", p.name, timeout, last, tail(string(agentLog), 3000))
	return 0
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// sql runs a query as root over p's socket; clients never read option files.
func (c *cluster) sql(p *pod, query string) (string, error) {
	cmd := execCommand("mariadb", "--no-defaults", "--socket="+p.socket, "-uroot", "-N", "-B", "-e", query)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MYSQL_PWD=" + c.secrets["root-password"]}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s on %s: %w: %s", query, p.name, err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func (c *cluster) mustSQL(p *pod, query string) string {
	c.t.Helper()
	out, err := c.sql(p, query)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// slaveField is one field of SHOW SLAVE STATUS ("" without a source).
func (c *cluster) slaveField(p *pod, name string) string {
	c.t.Helper()
	cmd := execCommand("mariadb", "--no-defaults", "--socket="+p.socket, "-uroot", "-E", "-e", "SHOW SLAVE STATUS")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MYSQL_PWD=" + c.secrets["root-password"]}
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("SHOW SLAVE STATUS on %s: %v", p.name, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ": "); ok && k == name {
			return v
		}
	}
	return ""
}

// status reads global status variables.
func (c *cluster) status(p *pod, names ...string) map[string]string {
	c.t.Helper()
	out := c.mustSQL(p, "SHOW GLOBAL STATUS WHERE Variable_name IN ('"+strings.Join(names, "','")+"')")
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "\t"); ok {
			m[k] = v
		}
	}
	return m
}

// labelled is the pod carrying role=primary ("" if none).
func (c *cluster) labelled() string {
	b, err := os.ReadFile(c.label)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// epoch is the record's epoch ("" without a record).
func (c *cluster) epoch() string {
	b, err := os.ReadFile(filepath.Join(c.topology, "epoch"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// waitRO waits until p's read_only is want ("0" or "1").
func (c *cluster) waitRO(p *pod, want string, timeout time.Duration) time.Duration {
	t := c.t
	t.Helper()
	start := time.Now()
	for {
		got, err := c.sql(p, "SELECT @@GLOBAL.read_only")
		if err == nil && got == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			agentLog, _ := os.ReadFile(filepath.Join(p.dir, "log", "agent.log"))
			t.Fatalf("%s: read_only=%q (%v) after %v; want %s\nagent log:\n%s", p.name, got, err, timeout, want, tail(string(agentLog), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setRecord writes the record through the API stand-in, as failover.sh would.
func (c *cluster) setRecord(primary, epoch string) {
	c.t.Helper()
	cmd := exec.Command("bash", "-c", `. "$MYSQL_HOOKS"; v=$(record_get | head -1); record_cas "$v" "$1" "$2" ""`, "_", primary, epoch)
	cmd.Env = c.baseEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("writing the record: %v\n%s", err, out)
	}
}

func (c *cluster) record() (string, bool) {
	b, err := os.ReadFile(filepath.Join(c.topology, "primary"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// tableState is what must be equal on every pod once replication caught up.
type tableState struct {
	gtid     string
	rows     string
	checksum string
}

func (c *cluster) state(p *pod) (tableState, error) {
	var s tableState
	var err error
	if s.gtid, err = c.sql(p, "SELECT @@GLOBAL.gtid_binlog_pos"); err != nil {
		return s, err
	}
	if s.rows, err = c.sql(p, "SELECT COUNT(*) FROM app.t"); err != nil {
		return s, err
	}
	out, err := c.sql(p, "CHECKSUM TABLE app.t")
	if err != nil {
		return s, err
	}
	s.checksum = out[strings.LastIndexByte(out, '\t')+1:]
	return s, nil
}

// waitConverged waits until every pod has applied the primary's last
// transaction, then requires equal row counts and checksums.
func (c *cluster) waitConverged(primary *pod, replicas []*pod, timeout time.Duration) tableState {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		want, err := c.state(primary)
		if err != nil {
			t.Fatal(err)
		}
		var diff []string
		for _, r := range replicas {
			got, err := c.state(r)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				diff = append(diff, fmt.Sprintf("%s=%+v", r.name, got))
			}
		}
		if len(diff) == 0 {
			return want
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged after %v: primary %s=%+v, %s", timeout, primary.name, want, strings.Join(diff, " "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// writer inserts rows into the labelled primary, one autocommit INSERT at a
// time, and records an id as acknowledged only after the server returned
// OK for it. An id whose outcome the client never learned is "unknown".
type writer struct {
	c    *cluster
	name string
	pin  string // write to this pod whatever the label says ("": follow the label)

	mu      sync.Mutex
	next    int64
	acked   []int64
	ackedAt []time.Time
	unknown []int64
	errs    int

	stop chan struct{}
	done chan struct{}
}

func (c *cluster) startWriter(name string, firstID int64) *writer {
	return c.startWriterTo("", name, firstID)
}

// startWriterTo starts a writer that keeps writing to pod pin, as a client
// on that pod's side of a partition would.
func (c *cluster) startWriterTo(pin, name string, firstID int64) *writer {
	w := &writer{c: c, name: name, pin: pin, next: firstID, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	c.top.Cleanup(w.halt)
	return w
}

func (w *writer) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	for !w.stopped() {
		target := w.c.labelled()
		if w.pin != "" {
			target = w.pin
		}
		if target == "" {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err := w.session(w.c.ip(target)); err != nil {
			w.mu.Lock()
			w.errs++
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// session keeps one client connection and inserts until an error.
func (w *writer) session(host string) error {
	cmd := execCommand("mariadb", "--no-defaults", "-h", host, "-P", "3306", "-u", "app", "-N", "-B", "--unbuffered", "--connect-timeout=2", "app")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MYSQL_PWD=" + w.c.secrets["app-password"]}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = stdin.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for !w.stopped() {
		w.mu.Lock()
		id := w.next
		w.next++
		w.mu.Unlock()
		if _, err := fmt.Fprintf(stdin, "INSERT INTO t (id, writer, v) VALUES (%d, '%s', SHA2('%d', 256)); SELECT %d;\n", id, w.name, id, id); err != nil {
			w.unknownID(id)
			return err
		}
		select {
		case line, ok := <-lines:
			if ok && line == strconv.FormatInt(id, 10) {
				w.mu.Lock()
				w.acked = append(w.acked, id)
				w.ackedAt = append(w.ackedAt, time.Now())
				w.mu.Unlock()
				continue
			}
			w.unknownID(id)
			return fmt.Errorf("insert %d: no acknowledgement (%q)", id, line)
		case <-time.After(90 * time.Second):
			w.unknownID(id)
			return fmt.Errorf("insert %d: no answer in 90 s", id)
		}
	}
	return nil
}

func (w *writer) unknownID(id int64) {
	w.mu.Lock()
	w.unknown = append(w.unknown, id)
	w.mu.Unlock()
}

func (w *writer) ackCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitAcks waits until n more rows than now are acknowledged.
func (w *writer) waitAcks(n int, timeout time.Duration) {
	t := w.c.t
	t.Helper()
	target := w.ackCount() + n
	deadline := time.Now().Add(timeout)
	for w.ackCount() < target {
		if time.Now().After(deadline) {
			t.Fatalf("writer %s: %d acknowledged rows after %v, want %d (primary %q)", w.name, w.ackCount(), timeout, target, w.c.labelled())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// maxGap is the longest time without an acknowledgement in [from, to]:
// the write outage a client saw.
func (w *writer) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	prev := from
	for _, at := range w.ackedAt {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			if d := at.Sub(prev); d > gap {
				gap = d
			}
			break
		}
		if d := at.Sub(prev); d > gap {
			gap = d
		}
		prev = at
	}
	return gap
}

// lossReport compares a writer's acknowledged ids with the rows on a pod.
type lossReport struct {
	acked, present, unknown, unknownPresent, errs int
	missing, phantom                              []int64
}

func (w *writer) loss(p *pod) (lossReport, error) {
	var r lossReport
	out, err := w.c.sql(p, fmt.Sprintf("SELECT id FROM app.t WHERE writer='%s'", w.name))
	if err != nil {
		return r, err
	}
	present := map[int64]bool{}
	for _, f := range strings.Fields(out) {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return r, fmt.Errorf("bad id %q on %s", f, p.name)
		}
		present[id] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	acked := map[int64]bool{}
	for _, id := range w.acked {
		acked[id] = true
		if !present[id] {
			r.missing = append(r.missing, id)
		}
	}
	unknown := map[int64]bool{}
	for _, id := range w.unknown {
		unknown[id] = true
		if present[id] {
			r.unknownPresent++
		}
	}
	for id := range present {
		if !acked[id] && !unknown[id] {
			r.phantom = append(r.phantom, id)
		}
	}
	sort.Slice(r.phantom, func(i, j int) bool { return r.phantom[i] < r.phantom[j] })
	r.acked, r.present, r.unknown, r.errs = len(w.acked), len(present), len(w.unknown), w.errs
	return r, nil
}

// checkNoLoss requires every acknowledged row of the writer on p, and no
// row the writer never sent.
func (w *writer) checkNoLoss(p *pod) {
	t := w.c.t
	t.Helper()
	r, err := w.loss(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE writer %s on %s: acknowledged %d, present %d, acknowledged but missing %d, outcome unknown %d (of which present %d), client errors %d",
		w.name, p.name, r.acked, r.present, len(r.missing), r.unknown, r.unknownPresent, r.errs)
	if r.acked == 0 {
		t.Errorf("writer %s acknowledged nothing: the check would be vacuous", w.name)
	}
	if len(r.missing) > 0 {
		t.Errorf("writer %s: %d acknowledged rows lost on %s, e.g. %v", w.name, len(r.missing), p.name, r.missing[:min(len(r.missing), 10)])
	}
	if len(r.phantom) > 0 {
		t.Errorf("writer %s: %d rows on %s that were never sent, e.g. %v", w.name, len(r.phantom), p.name, r.phantom[:min(len(r.phantom), 10)])
	}
}

// proxy stands between a cloning pod and its donor's clone port: it passes
// the stream through, or cuts it (closes) or stalls it after limit bytes of
// the donor's side.
type proxy struct {
	ln       net.Listener
	upstream string
	limit    int64
	mode     string // "pass", "cut" or "stall"
	wg       sync.WaitGroup

	mu        sync.Mutex
	conns     []net.Conn
	forwarded int64
	reached   chan struct{}
	once      sync.Once
}

func startProxy(t *testing.T, listen, upstream, mode string, limit int64) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("proxy listen %s: %v", listen, err)
	}
	p := &proxy{ln: ln, upstream: upstream, limit: limit, mode: mode, reached: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		// The client's side of the TLS handshake goes up unchanged.
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(up, down)
		}()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var n int64
			var err error
			if p.mode == "pass" {
				n, err = io.Copy(down, up)
			} else {
				n, err = io.CopyN(down, up, p.limit)
			}
			p.mu.Lock()
			p.forwarded += n
			p.mu.Unlock()
			if err == nil && p.mode != "pass" {
				p.once.Do(func() { close(p.reached) })
			}
			if p.mode == "stall" {
				// Hold both ends open, sending nothing more, until closed.
				return
			}
			_ = down.Close()
			_ = up.Close()
		}()
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded
}

// listDir lists a directory's entries, dotfiles included.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
