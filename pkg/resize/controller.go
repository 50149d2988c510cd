package resize

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Expander grows the volumes this provisioner made. pkg/volume's Provisioner
// implements it.
type Expander interface {
	// Expand grows the volume of pv to at least size and returns its new
	// capacity, which may be larger (rounding). It is idempotent: a volume
	// already that large is left alone. A shrink is an error wrapping
	// storage.ErrUnsupported.
	Expand(ctx context.Context, pv *v1.PersistentVolume, size resource.Quantity) (resource.Quantity, error)
	// Owns says whether pv was made by this provisioner from its store.
	Owns(pv *v1.PersistentVolume) bool
}

// Options configure New. Fields marked required must be set; the others
// have the defaults stated.
type Options struct {
	// Provisioner is our name (required): only claims of classes whose
	// provisioner it is are expanded; it is also written as the claim's
	// storage-resizer.
	Provisioner string
	// Expander grows volumes (required).
	Expander Expander
	// Client writes claims, volumes (required).
	Client kubernetes.Interface
	// Informers is the factory whose PVC, PV and StorageClass informers
	// this controller uses (required); New registers them, the caller
	// starts the factory.
	Informers informers.SharedInformerFactory
	// Recorder records events on claims (required).
	Recorder record.EventRecorder
	// Workers is how many claims are expanded at once. Default 2.
	Workers int
	// ExpandTimeout bounds one Expand call. Default 10 minutes: an offline
	// ext4 grow checks the filesystem first.
	ExpandTimeout time.Duration
	// APITimeout bounds one API call. Default 30 seconds.
	APITimeout time.Duration
	// RetryBase and RetryMax bound the exponential backoff of transient
	// failures. Defaults 1 second and 5 minutes.
	RetryBase, RetryMax time.Duration
	// InfeasibleRetry is how long an infeasible expansion waits before the
	// same target is tried again. Default 5 minutes. A change of the
	// request is acted on at once.
	InfeasibleRetry time.Duration
}

func (o *Options) defaults() error {
	switch {
	case o.Provisioner == "":
		return errors.New("resize: Options.Provisioner is required")
	case o.Expander == nil, o.Client == nil, o.Informers == nil, o.Recorder == nil:
		return errors.New("resize: Options.Expander, Client, Informers and Recorder are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	def(&o.ExpandTimeout, 10*time.Minute)
	def(&o.APITimeout, 30*time.Second)
	def(&o.RetryBase, time.Second)
	def(&o.RetryMax, 5*time.Minute)
	def(&o.InfeasibleRetry, 5*time.Minute)
	return nil
}

// Controller expands claims; see the package doc.
type Controller struct {
	o       Options
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	synced  []cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]

	mu sync.Mutex
	// infeasible holds, per claim key, the target that failed as
	// infeasible and when it may be tried again.
	infeasible map[string]infeasibleTry
}

type infeasibleTry struct {
	target resource.Quantity
	after  time.Time
}

// New makes a controller and registers its informers with o.Informers.
func New(o Options) (*Controller, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	pvcs := o.Informers.Core().V1().PersistentVolumeClaims()
	pvs := o.Informers.Core().V1().PersistentVolumes()
	scs := o.Informers.Storage().V1().StorageClasses()
	c := &Controller{
		o:       o,
		claims:  pvcs.Lister(),
		volumes: pvs.Lister(),
		classes: scs.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](o.RetryBase, o.RetryMax),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "resize"}),
		infeasible: map[string]infeasibleTry{},
	}
	reg, err := pvcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(old, obj any) {
			if relevantUpdate(old, obj) {
				c.enqueue(obj)
			}
		},
		DeleteFunc: c.forget,
	})
	if err != nil {
		return nil, fmt.Errorf("resize: watch claims: %w", err)
	}
	c.synced = []cache.InformerSynced{reg.HasSynced, pvs.Informer().HasSynced, scs.Informer().HasSynced}
	return c, nil
}

func (c *Controller) enqueue(obj any) {
	pvc, ok := obj.(*v1.PersistentVolumeClaim)
	if !ok || !NeedsResize(pvc) {
		return
	}
	if key, err := cache.MetaNamespaceKeyFunc(pvc); err == nil {
		c.queue.Add(key)
	}
}

// relevantUpdate says whether a claim update may call for work: a changed
// request (up, or down to recover), a bind, or a resync. Not our own status
// writes: acting on those would retry a failure at once, past the backoff,
// and read a cache that may not have our latest write yet.
func relevantUpdate(oldObj, newObj any) bool {
	old, ok1 := oldObj.(*v1.PersistentVolumeClaim)
	pvc, ok2 := newObj.(*v1.PersistentVolumeClaim)
	if !ok1 || !ok2 {
		return false
	}
	oldReq, newReq := old.Spec.Resources.Requests[v1.ResourceStorage], pvc.Spec.Resources.Requests[v1.ResourceStorage]
	oldCap, newCap := old.Status.Capacity[v1.ResourceStorage], pvc.Status.Capacity[v1.ResourceStorage]
	return oldReq.Cmp(newReq) != 0 || old.Status.Phase != pvc.Status.Phase || old.Spec.VolumeName != pvc.Spec.VolumeName ||
		oldCap.Cmp(newCap) != 0 || old.ResourceVersion == pvc.ResourceVersion
}

func (c *Controller) forget(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	c.queue.Forget(key)
	c.mu.Lock()
	delete(c.infeasible, key)
	c.mu.Unlock()
}

// Run waits for the caches and expands claims until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("resize")
	ctx = klog.NewContext(ctx, logger)
	defer c.queue.ShutDown()
	logger.Info("Starting volume expansion controller", "provisioner", c.o.Provisioner, "workers", c.o.Workers)
	defer logger.Info("Stopped volume expansion controller")
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	var wg sync.WaitGroup
	for range c.o.Workers {
		wg.Go(func() { wait.UntilWithContext(ctx, c.work, time.Second) })
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		c.handle(ctx, key)
		c.queue.Done(key)
	}
}

// handle runs one sync and turns its error into a queue decision.
func (c *Controller) handle(ctx context.Context, key string) {
	logger := klog.FromContext(ctx).WithValues("pvc", key)
	ctx = klog.NewContext(ctx, logger)
	retryAfter, err := c.sync(ctx, key)
	switch {
	case err == nil && retryAfter > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, retryAfter)
	case err == nil:
		c.queue.Forget(key)
	default:
		switch kind := classify(err); kind {
		case errGone:
			logger.V(2).Info("Object gone while expanding", "err", err)
			c.queue.Forget(key)
		case errStale:
			logger.V(2).Info("Outdated object; retrying", "err", err)
			c.queue.AddRateLimited(key)
		default:
			logger.Error(err, "Expanding claim failed; retrying", "kind", kind.String())
			c.queue.AddRateLimited(key)
		}
	}
}

// sync does what Decide says for claim key. It returns a delay after which to
// look again (infeasible targets), or an error to retry with backoff.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	logger := klog.FromContext(ctx)
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil // not a key of ours; retrying will not help
	}
	pvc, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if !NeedsResize(pvc) {
		return 0, nil
	}
	in := Inputs{Claim: pvc, Provisioner: c.o.Provisioner}
	if in.Volume, err = c.volumes.Get(pvc.Spec.VolumeName); apierrors.IsNotFound(err) {
		// The informer may not have caught up with a bind yet.
		return 0, fmt.Errorf("volume %s of a Bound claim not in the cache yet", pvc.Spec.VolumeName)
	} else if err != nil {
		return 0, err
	}
	in.Owned = c.o.Expander.Owns(in.Volume)
	if class := claimClass(pvc); class != "" {
		if in.Class, err = c.classes.Get(class); err != nil && !apierrors.IsNotFound(err) {
			return 0, err
		}
	}
	plan := Decide(in)
	logger = logger.WithValues("pv", in.Volume.Name, "action", plan.Action.String(), "target", plan.Target.String(),
		"pvCapacity", plan.Capacity.String(), "why", plan.Why)
	ctx = klog.NewContext(ctx, logger)
	switch plan.Action {
	case Skip:
		logger.V(4).Info("Not expanding")
		return 0, nil
	case Refuse:
		logger.Info("Refusing to shrink")
		c.o.Recorder.Event(pvc, v1.EventTypeWarning, ReasonResizeFailed, plan.Why)
		return 0, nil
	}
	if wait := c.infeasibleWait(key, plan.Target); wait > 0 {
		logger.V(2).Info("Expansion to this target was infeasible; waiting before trying again", "wait", wait)
		return wait, nil
	}
	return 0, c.expand(ctx, key, pvc, in.Volume, plan)
}

// infeasibleWait is how long the claim must still wait before its target,
// which failed as infeasible, is tried again.
func (c *Controller) infeasibleWait(key string, target resource.Quantity) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	try, ok := c.infeasible[key]
	if !ok {
		return 0
	}
	// Only the target counts, not the claim's status, which the cache may
	// not show yet.
	if try.target.Cmp(target) != 0 {
		delete(c.infeasible, key) // the user asked for something else
		return 0
	}
	return time.Until(try.after)
}

// expand carries out a Grow or Record plan, in the contract's order: mark
// the claim, expand the volume, patch the PV, finish the claim.
func (c *Controller) expand(ctx context.Context, key string, pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, plan Plan) error {
	logger := klog.FromContext(ctx)
	capacity := plan.Capacity
	if plan.Action == Grow {
		if !markedInProgress(pvc, plan.Target, c.o.Provisioner) {
			var err error
			if pvc, err = c.patchClaimStatus(ctx, pvc, withInProgress(pvc, plan.Target, c.o.Provisioner, metav1.Now()), true); err != nil {
				return fmt.Errorf("mark claim as resizing: %w", err)
			}
		}
		c.o.Recorder.Eventf(pvc, v1.EventTypeNormal, ReasonResizing, "Expanding volume %s from %s to %s", pv.Name, plan.Capacity.String(), plan.Target.String())
		logger.Info("Expanding volume")
		start := time.Now()
		var err error
		if capacity, err = c.callExpand(ctx, pv, plan.Target); err != nil {
			return c.expandFailed(ctx, key, pvc, plan.Target, err)
		}
		logger.Info("Volume expanded", "capacity", capacity.String(), "duration", time.Since(start).Round(time.Millisecond))
		if err := c.patchVolumeCapacity(ctx, pv, capacity); err != nil {
			return fmt.Errorf("record capacity %s on volume %s: %w", capacity.String(), pv.Name, err)
		}
	}
	if _, err := c.patchClaimStatus(ctx, pvc, withFinished(pvc, capacity), true); err != nil {
		return fmt.Errorf("mark claim as resized: %w", err)
	}
	c.mu.Lock()
	delete(c.infeasible, key)
	c.mu.Unlock()
	logger.Info("Claim expanded", "capacity", capacity.String())
	c.o.Recorder.Eventf(pvc, v1.EventTypeNormal, ReasonResizeSuccess, "Expanded volume %s to %s", pv.Name, capacity.String())
	return nil
}

// callExpand is Expand, bounded in time and checked against its contract.
func (c *Controller) callExpand(ctx context.Context, pv *v1.PersistentVolume, target resource.Quantity) (resource.Quantity, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.ExpandTimeout)
	defer cancel()
	capacity, err := c.o.Expander.Expand(ctx, pv.DeepCopy(), target)
	if err != nil {
		return capacity, fmt.Errorf("expand volume %s to %s: %w", pv.Name, target.String(), err)
	}
	if capacity.Cmp(target) < 0 {
		return capacity, fmt.Errorf("expand volume %s to %s: the store reports only %s", pv.Name, target.String(), capacity.String())
	}
	return capacity, nil
}

// expandFailed reports a failed Expand and records an infeasible one on the
// claim. It returns err, or nil when the retry is scheduled here.
func (c *Controller) expandFailed(ctx context.Context, key string, pvc *v1.PersistentVolumeClaim, target resource.Quantity, err error) error {
	c.o.Recorder.Event(pvc, v1.EventTypeWarning, ReasonResizeFailed, err.Error())
	if classify(err) != errInfeasible {
		return err
	}
	klog.FromContext(ctx).Error(err, "Expansion is infeasible; the request may be lowered to recover", "retryAfter", c.o.InfeasibleRetry)
	// No resourceVersion check, as external-resizer: the failure must be
	// recorded even if our copy is slightly old.
	if _, perr := c.patchClaimStatus(ctx, pvc, withInfeasible(pvc, err, metav1.Now()), false); perr != nil {
		return errors.Join(err, fmt.Errorf("mark claim as infeasible: %w", perr))
	}
	c.mu.Lock()
	c.infeasible[key] = infeasibleTry{target: target, after: time.Now().Add(c.o.InfeasibleRetry)}
	c.mu.Unlock()
	c.queue.AddAfter(key, c.o.InfeasibleRetry)
	return nil
}
