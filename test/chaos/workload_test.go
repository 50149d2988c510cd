package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

// opKind is one kind of workload operation. Expansions and clones join
// here once issue "isolated volumes" lands: add opExpand and opClone, pick
// them in worker.next, and check their results in ledger terms (a clone's
// files equal its source's at clone time; an expanded volume keeps its
// files).
type opKind int

const (
	opProvision opKind = iota
	opWrite            // write a new file and read it back
	opDelete
	numOpKinds
)

func (k opKind) String() string {
	return [...]string{"provision", "write-verify", "delete"}[k]
}

// vol is one claim of the workload and what was acknowledged in it.
type vol struct {
	claim string
	pv    *v1.PersistentVolume
	files map[string][]byte // acknowledged writes
}

// ledger is the workload's memory: which claims exist and which writes the
// server acknowledged. The final checks compare the world against it.
type ledger struct {
	mu      sync.Mutex
	live    map[string]*vol // by claim name
	deleted []*vol
	seq     int
}

func (l *ledger) add(v *vol) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live[v.claim] = v
}

// pick returns a random live volume other than the excluded claims.
func (l *ledger) pick(r *rand.Rand, exclude ...string) *vol {
	l.mu.Lock()
	defer l.mu.Unlock()
	var vs []*vol
outer:
	for _, v := range l.live {
		for _, e := range exclude {
			if v.claim == e {
				continue outer
			}
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return nil
	}
	return vs[r.IntN(len(vs))]
}

func (l *ledger) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live)
}

func (l *ledger) next() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return l.seq
}

func (l *ledger) ack(v *vol, name string, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v.files[name] = data
}

func (l *ledger) remove(v *vol) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.live, v.claim)
	l.deleted = append(l.deleted, v)
}

// workload runs operations from several workers until stopped.
type workload struct {
	c       *framework.Cluster
	n       *node
	ns      string
	class   string
	ledger  *ledger
	keep    []string // claims never deleted (the sentinel, the filler)
	maxVols int

	// sessions paces the workload's NFS mounts: the Go client binds each
	// connection to a privileged port (1-1023) that stays in TIME_WAIT for
	// a minute, and an unpaced workload runs out of them, which looks like
	// a server that does not answer.
	sessions <-chan time.Time

	provisioning atomic.Bool  // false pauses provisions (while the store is full)
	inflight     atomic.Int64 // provisions under way
	ops          [numOpKinds]atomic.Int64
	failed       [numOpKinds]atomic.Int64 // refused or interrupted by the chaos: expected, not acknowledged
	corrupt      atomic.Int64             // a write acknowledged and then read back different
	notes        chan string
}

func (w *workload) note(format string, args ...any) {
	select {
	case w.notes <- fmt.Sprintf(format, args...):
	default:
	}
}

func (w *workload) total() int64 {
	var n int64
	for i := range w.ops {
		n += w.ops[i].Load()
	}
	return n
}

func (w *workload) target(pv *v1.PersistentVolume) nfsclient.Target {
	return nfsclient.Target{Host: pv.Spec.NFS.Server, NFSPort: w.n.spec.NFSPort, MountPort: w.n.spec.MountdPort, Pseudo: pv.Spec.NFS.Path, Version: 3}
}

// run is one worker; it returns when ctx ends.
func (w *workload) run(ctx context.Context, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for ctx.Err() == nil {
		switch w.nextOp(r) {
		case opProvision:
			w.provision(ctx)
		case opWrite:
			w.write(ctx, r)
		case opDelete:
			w.delete(ctx, r)
		}
	}
}

func (w *workload) nextOp(r *rand.Rand) opKind {
	size := w.ledger.size()
	x := r.Float64()
	switch {
	case w.provisioning.Load() && (size < 4 || size < w.maxVols && x < 0.3):
		return opProvision
	case size > 6 && x > 0.85, size >= w.maxVols && x > 0.6:
		return opDelete
	default:
		return opWrite
	}
}

func (w *workload) provision(ctx context.Context) {
	w.inflight.Add(1)
	defer w.inflight.Add(-1)
	if !w.provisioning.Load() {
		return
	}
	w.provisionNamed(ctx, fmt.Sprintf("w-%d", w.ledger.next()))
}

// provisionNamed makes claim name, waits until it is Bound and records it;
// it returns the volume, whose pv is nil if it was not Bound in time.
func (w *workload) provisionNamed(ctx context.Context, name string) *vol {
	pvc := framework.Claim(w.ns, name, w.class, "1Mi", v1.ReadWriteMany)
	w.ops[opProvision].Add(1)
	if _, err := w.c.Client.CoreV1().PersistentVolumeClaims(w.ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		w.failed[opProvision].Add(1)
		w.note("create claim %s: %v", name, err)
		return nil
	}
	// Every claim made is in the ledger, Bound or not: the end checks
	// that each one got a volume.
	v := &vol{claim: name, files: map[string][]byte{}}
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	pv, err := framework.WaitBound(wctx, w.c.Client, w.ns, name)
	if err != nil {
		w.failed[opProvision].Add(1)
		w.note("claim %s not Bound: %v", name, err)
		w.ledger.add(v)
		return v
	}
	v.pv = pv
	w.ledger.add(v)
	return v
}

func (w *workload) write(ctx context.Context, r *rand.Rand) {
	v := w.ledger.pick(r)
	if v == nil || v.pv == nil {
		time.Sleep(50 * time.Millisecond)
		return
	}
	w.ops[opWrite].Add(1)
	name := fmt.Sprintf("f-%d", w.ledger.next())
	data := make([]byte, 4<<10+r.IntN(28<<10))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if !w.pace(ctx) {
		return
	}
	if err := nfsWrite(ctx, w.target(v.pv), name, data); err != nil {
		w.failed[opWrite].Add(1)
		return // not acknowledged: nothing is owed
	}
	w.ledger.ack(v, name, data)
	if !w.pace(ctx) {
		return
	}
	got, err := nfsRead(ctx, w.target(v.pv), name)
	if err != nil {
		return // a read cut by a kill; the end check reads it again
	}
	if !bytes.Equal(got, data) {
		w.corrupt.Add(1)
		w.note("%s/%s read back %d bytes differing from the %d acknowledged", v.claim, name, len(got), len(data))
	}
}

// pace waits for the next NFS session slot; false means ctx ended.
func (w *workload) pace(ctx context.Context) bool {
	select {
	case <-w.sessions:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *workload) delete(ctx context.Context, r *rand.Rand) {
	v := w.ledger.pick(r, w.keep...)
	if v == nil || v.pv == nil {
		return
	}
	w.ops[opDelete].Add(1)
	if err := w.c.Client.CoreV1().PersistentVolumeClaims(w.ns).Delete(ctx, v.claim, metav1.DeleteOptions{}); err != nil {
		w.failed[opDelete].Add(1)
		w.note("delete claim %s: %v", v.claim, err)
		return
	}
	w.ledger.remove(v)
}

// nfsWrite and nfsRead bound the Go NFS client, which takes no context: a
// hang is an error, not a stuck suite.
func nfsWrite(ctx context.Context, t nfsclient.Target, name string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ch := make(chan error, 1)
	go func() { ch <- nfsclient.WriteFile(ctx, t, name, data) }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("write %s: no answer: %w", name, ctx.Err())
	}
}

func nfsRead(ctx context.Context, t nfsclient.Target, name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		data, err := nfsclient.ReadFile(ctx, t, name)
		ch <- result{data, err}
	}()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read %s: no answer: %w", name, ctx.Err())
	}
}
