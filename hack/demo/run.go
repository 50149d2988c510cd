package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/ganesha"
	"github.com/nfs-provisioner/nfs-provisioner/pkg/volume"
	"github.com/nfs-provisioner/nfs-provisioner/test/framework"
	"github.com/nfs-provisioner/nfs-provisioner/test/nfsclient"
)

const (
	namespace   = "default"
	statefulSet = "mysql"
	claimPrefix = "data-mysql-" // volumeClaimTemplates "data" of StatefulSet "mysql"
)

// demo holds what the steps share.
type demo struct {
	cfg       config
	n         narrator
	cluster   *framework.Cluster
	client    kubernetes.Interface
	prov      *framework.Process
	store     string // the provisioner's -export-dir
	nfsPort   int
	mountPort int
	timings   []timing
}

type timing struct {
	what string
	took time.Duration
}

func (d *demo) timed(what string, f func() error) error {
	t0 := time.Now()
	err := f()
	d.timings = append(d.timings, timing{what, time.Since(t0)})
	return err
}

// run is the demo: each step prints what it did. On return (success, error
// or Ctrl-C) everything it started is stopped, unless it is the supervisor
// of a -keep run, which waits for SIGTERM first.
func run(ctx context.Context, cfg config) (err error) {
	d := &demo{cfg: cfg, n: narrator{start: time.Now()}}
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return err
	}
	defer func() {
		if cfg.supervise && err == nil {
			d.n.say("kept running; waiting for SIGTERM (make demo-stop)")
			<-ctx.Done()
		}
		d.shutdown()
	}()
	if _, err := os.Stat(cfg.provisioner); err != nil {
		return fmt.Errorf("provisioner binary %s: %w (run `make build`, or `make demo`, which builds it)", cfg.provisioner, err)
	}
	bin, err := framework.BinDir()
	if err != nil {
		return err
	}
	d.n.say("step 1/7: dependencies and builds (make deps build): control plane in %s, provisioner %s", bin, cfg.provisioner)

	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"start the control plane", d.startCluster},
		{"start the provisioner and its NFS-Ganesha", d.startProvisioner},
		{"apply deploy/storageclass.yaml and deploy/statefulset.yaml; wait for every replica's claim", d.applyManifests},
		{"write a file through a real NFS client and read it back", d.writeAndRead},
		{"delete a claim", d.deleteClaim},
	}
	for i, s := range steps {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		d.n.say("step %d/%d: %s", i+2, len(steps)+2, s.name)
		if err := s.f(ctx); err != nil {
			if ctx.Err() != nil {
				return errors.New("interrupted; stopped everything it had started")
			}
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return d.summary(ctx)
}

func (d *demo) startCluster(ctx context.Context) error {
	return d.timed("control plane start", func() error {
		c, err := framework.Start(ctx, framework.Options{TempDir: d.cfg.workDir})
		if err != nil {
			return err
		}
		d.cluster, d.client = c, c.Client
		d.n.say("  etcd, kube-apiserver and kube-controller-manager ready in %v at %s", c.StartupTime.Round(100*time.Millisecond), c.RESTConfig.Host)
		d.n.say("  kubeconfig: %s", c.Kubeconfig)
		return nil
	})
}

// provisionerName reads the provisioner name from the shipped StorageClass,
// so the demo runs the provisioner users' manifests ask for.
func (d *demo) provisionerName() (string, error) {
	data, err := os.ReadFile(filepath.Join(d.cfg.repo, "deploy", "storageclass.yaml"))
	if err != nil {
		return "", err
	}
	var sc struct{ Provisioner string }
	if err := yaml.Unmarshal(data, &sc); err != nil || sc.Provisioner == "" {
		return "", fmt.Errorf("deploy/storageclass.yaml: no provisioner field (%v)", err)
	}
	return sc.Provisioner, nil
}

func (d *demo) startProvisioner(ctx context.Context) error {
	name, err := d.provisionerName()
	if err != nil {
		return err
	}
	d.store = filepath.Join(d.cfg.workDir, "store")
	if err := os.RemoveAll(d.store); err != nil {
		return err
	}
	log := filepath.Join(d.cfg.workDir, "provisioner.log")
	return d.timed("provisioner ready", func() error {
		spec := &framework.ProvisionerSpec{
			Binary: d.cfg.provisioner, Name: name, Namespace: namespace,
			ExportDir: d.store, Kubeconfig: d.cluster.Kubeconfig, LogFile: log,
		}
		d.prov, err = framework.StartProvisioner(ctx, spec)
		if err != nil {
			return err
		}
		d.nfsPort, d.mountPort = spec.NFSPort, spec.MountdPort
		d.n.say("  provisioner %s (pid %d) ready; NFS on 127.0.0.1:%d, mountd :%d; store %s", name, d.prov.PID(), d.nfsPort, d.mountPort, d.store)
		d.n.say("  its log: %s", log)
		return nil
	})
}

func (d *demo) applyManifests(ctx context.Context) error {
	for _, f := range []string{"storageclass.yaml", "statefulset.yaml"} {
		objs, err := applyFile(ctx, d.cluster.RESTConfig, filepath.Join(d.cfg.repo, "deploy", f), namespace)
		if err != nil {
			return err
		}
		var names []string
		for _, o := range objs {
			names = append(names, o.Kind+"/"+o.Name)
		}
		d.n.say("  applied deploy/%s: %s", f, strings.Join(names, ", "))
	}
	sts, err := d.client.AppsV1().StatefulSets(namespace).Get(ctx, statefulSet, metav1.GetOptions{})
	if err != nil {
		return err
	}
	replicas := int(*sts.Spec.Replicas)

	// No kubelet here: the stand-in reports each pod Ready, which is what
	// the StatefulSet controller waits for before it makes the next
	// replica and its claim. No container runs.
	d.n.say("  no kubelet on this machine: a stand-in reports pods Ready so the StatefulSet controller goes on to the next replica")
	standIn, stopStandIn := context.WithCancel(ctx)
	defer stopStandIn()
	go func() { _ = framework.KubeletStandIn(standIn, d.client, namespace, "app=mysql") }()

	return d.timed(fmt.Sprintf("%d claims Bound", replicas), func() error {
		for i := range replicas {
			name := claimPrefix + strconv.Itoa(i)
			t0 := time.Now()
			wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
			pv, err := framework.WaitBound(wait, d.client, namespace, name)
			cancel()
			if err != nil {
				return err
			}
			d.n.say("  %s Bound to %s in %v: nfs://%s%s (%s)", name, pv.Name, time.Since(t0).Round(10*time.Millisecond),
				pv.Spec.NFS.Server, pv.Spec.NFS.Path, strings.Join(pv.Spec.MountOptions, ","))
		}
		return nil
	})
}

func (d *demo) pvOf(ctx context.Context, claim string) (*v1.PersistentVolume, error) {
	pvc, err := d.client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return d.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
}

func (d *demo) writeAndRead(ctx context.Context) error {
	pv, err := d.pvOf(ctx, claimPrefix+"0")
	if err != nil {
		return err
	}
	data := []byte(fmt.Sprintf("Hello from the nfs-provisioner demo, written over NFSv3 to %s at %s\n", pv.Name, time.Now().Format(time.RFC3339)))
	// As the database's user: the shipped class carves the directory for
	// uid/gid 999 and squashes client root, as MariaDB's pods need.
	uid, gid, err := classOwner(ctx, d.client, pv)
	if err != nil {
		return err
	}
	v3 := nfsclient.Target{Host: pv.Spec.NFS.Server, NFSPort: d.nfsPort, MountPort: d.mountPort, Pseudo: pv.Spec.NFS.Path, Version: 3, UID: uid, GID: gid}
	v4 := v3
	v4.Version = 4
	return d.timed("NFS write + read", func() error {
		if err := nfsclient.WriteFile(ctx, v3, "hello.txt", data); err != nil {
			return fmt.Errorf("write over NFSv3: %w", err)
		}
		back, err := nfsclient.ReadFile(ctx, v4, "hello.txt")
		if err != nil {
			return fmt.Errorf("read back over NFSv4: %w", err)
		}
		if string(back) != string(data) {
			return fmt.Errorf("read back %q, wrote %q", back, data)
		}
		d.n.say("  as uid %d, wrote %d bytes over NFSv3 to nfs://%s%s/hello.txt and read them back over NFSv4: %s", uid, len(data), v3.Host, v3.Pseudo, strings.TrimSpace(string(back)))
		local := filepath.Join(d.store, pv.Annotations[volume.AnnDirectory], "hello.txt")
		onDisk, err := os.ReadFile(local)
		if err != nil {
			return fmt.Errorf("the bytes are not in the store: %w", err)
		}
		var owner string
		if fi, err := os.Stat(local); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				owner = fmt.Sprintf(", owner %d:%d", st.Uid, st.Gid)
			}
		}
		d.n.say("  the bytes landed in the local store: %s (%d bytes%s, sha256 %x, same as written: %v)",
			local, len(onDisk), owner, sha256.Sum256(onDisk), string(onDisk) == string(data))
		return nil
	})
}

func (d *demo) deleteClaim(ctx context.Context) error {
	last := claimPrefix + "2"
	pv, err := d.pvOf(ctx, last)
	if err != nil {
		return err
	}
	dir := filepath.Join(d.store, pv.Annotations[volume.AnnDirectory])
	return d.timed("claim deleted to export and directory gone", func() error {
		// A claim in use by a pod is kept (pvc-protection); scale the
		// StatefulSet down first, as a user would.
		scale, err := d.client.AppsV1().StatefulSets(namespace).GetScale(ctx, statefulSet, metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = 2
		if _, err := d.client.AppsV1().StatefulSets(namespace).UpdateScale(ctx, statefulSet, scale, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("scale %s to 2: %w", statefulSet, err)
		}
		if err := d.client.CoreV1().PersistentVolumeClaims(namespace).Delete(ctx, last, metav1.DeleteOptions{}); err != nil {
			return err
		}
		d.n.say("  scaled StatefulSet %s to 2 and deleted claim %s (class reclaimPolicy Delete, onDelete delete)", statefulSet, last)
		for {
			_, err := d.client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(100 * time.Millisecond)
		}
		exports, err := d.exports(ctx)
		if err != nil {
			return err
		}
		for _, e := range exports {
			if e.Pseudo == pv.Spec.NFS.Path {
				return fmt.Errorf("export %d still serves %s", e.ID, e.Pseudo)
			}
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			return fmt.Errorf("directory %s still there (%v)", dir, err)
		}
		target := nfsclient.Target{Host: pv.Spec.NFS.Server, NFSPort: d.nfsPort, MountPort: d.mountPort, Pseudo: pv.Spec.NFS.Path, Version: 4}
		if _, err := nfsclient.List(ctx, target, "/"); err == nil {
			return fmt.Errorf("an NFS client can still reach %s", pv.Spec.NFS.Path)
		}
		d.n.say("  PV %s deleted; export %s gone (NFS clients refused); directory %s gone", pv.Name, pv.Spec.NFS.Path, dir)
		return nil
	})
}

// classOwner is the uid and gid the volume's StorageClass gives its
// directory (0 when the class leaves them unset).
func classOwner(ctx context.Context, client kubernetes.Interface, pv *v1.PersistentVolume) (uint32, uint32, error) {
	sc, err := client.StorageV1().StorageClasses().Get(ctx, pv.Spec.StorageClassName, metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	params, err := volume.ParseParams(sc.Parameters)
	if err != nil {
		return 0, 0, err
	}
	return uint32(params.UID), uint32(params.GID), nil
}

// exports lists what the provisioner's ganesha serves, over its D-Bus.
func (d *demo) exports(ctx context.Context) ([]ganesha.Export, error) {
	return framework.ProvisionerExports(ctx, d.store)
}

func (d *demo) summary(ctx context.Context) error {
	pvcs, err := d.client.CoreV1().PersistentVolumeClaims(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	pvs, err := d.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	exports, err := d.exports(ctx)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(d.store)
	if err != nil {
		return err
	}
	byPath := map[string]uint16{}
	for _, e := range exports {
		byPath[e.Pseudo] = e.ID
	}
	fmt.Println()
	fmt.Printf("  %-14s %-8s %-42s %-7s %s\n", "CLAIM", "STATUS", "PV", "EXPORT", "DIRECTORY IN THE STORE")
	sort.Slice(pvcs.Items, func(i, j int) bool { return pvcs.Items[i].Name < pvcs.Items[j].Name })
	for _, c := range pvcs.Items {
		var pv *v1.PersistentVolume
		for i := range pvs.Items {
			if pvs.Items[i].Name == c.Spec.VolumeName {
				pv = &pvs.Items[i]
			}
		}
		if pv == nil {
			fmt.Printf("  %-14s %-8s %-42s\n", c.Name, c.Status.Phase, "-")
			continue
		}
		fmt.Printf("  %-14s %-8s %-42s %-7d %s\n", c.Name, c.Status.Phase, pv.Name, byPath[pv.Spec.NFS.Path], pv.Annotations[volume.AnnDirectory])
	}
	dirs := 0
	for _, e := range entries {
		if e.IsDir() && e.Name() != volume.StateDirName {
			dirs++
		}
	}
	fmt.Printf("\n  claims %d, PVs %d, exports %d, directories %d (one deleted claim: its PV, export and directory are gone)\n\n", len(pvcs.Items), len(pvs.Items), len(exports), dirs)
	fmt.Printf("  %-44s %s\n", "TIMING", "")
	for _, t := range d.timings {
		fmt.Printf("  %-44s %v\n", t.what, t.took.Round(10*time.Millisecond))
	}
	fmt.Println()
	if len(pvcs.Items) != dirs || len(exports) != dirs || len(pvs.Items) != dirs {
		return fmt.Errorf("claims, PVs, exports and directories disagree: %d, %d, %d, %d", len(pvcs.Items), len(pvs.Items), len(exports), dirs)
	}
	d.n.say("done: every claim has a PV, an export and a directory, and nothing else is left")
	return nil
}

// shutdown stops the provisioner (which stops ganesha) and the control plane.
func (d *demo) shutdown() {
	if d.prov != nil {
		if err := d.prov.Stop(framework.DefaultStopGrace); err != nil {
			fmt.Fprintf(os.Stderr, "demo: stop provisioner: %v\n", err)
		}
	}
	if d.cluster != nil {
		if err := d.cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "demo: stop control plane: %v\n", err)
		}
	}
	if d.prov != nil || d.cluster != nil {
		d.n.say("stopped everything the demo started")
	}
}
