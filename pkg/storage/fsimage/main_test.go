package fsimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nfs-provisioner/nfs-provisioner/pkg/storage"
)

// Environment of the child processes some tests run (this test binary,
// re-executed).
const (
	childModeEnv  = "FSIMAGE_TEST_CHILD"
	childStoreEnv = "FSIMAGE_TEST_STORE"
	childStartEnv = "FSIMAGE_TEST_START"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childModeEnv) {
	case "":
		os.Exit(m.Run())
	case "available":
		b := &Backend{opts: Options{Kinds: []storage.Kind{storage.XFS, storage.Ext4}}}
		fmt.Println("AVAILABLE", b.Available())
	case "churn":
		if err := churn(os.Getenv(childStoreEnv)); err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

func storeOptions(store string) Options {
	return Options{
		ImageDir: filepath.Join(store, ".nfs-provisioner", "images"),
		MountDir: filepath.Join(store, ".nfs-provisioner", "mounts"),
	}
}

// payload is what every churned volume holds in its file "data".
var payload = bytes.Repeat([]byte("0123456789abcdef"), 1<<16)

// writeData writes payload atomically (temp file, fsync, rename), so a
// kill leaves the file whole or absent.
func writeData(dir string) error {
	tmp := filepath.Join(dir, ".data.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(payload); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return os.Rename(tmp, filepath.Join(dir, "data"))
}

// churn plays a provisioner that gets SIGKILLed at a random moment: it
// creates, writes, expands, clones, archives and removes volumes for ever.
func churn(store string) error {
	ctx := context.Background()
	b, err := New(ctx, storeOptions(store))
	if err != nil {
		return err
	}
	fmt.Println("READY")
	start, _ := strconv.Atoi(os.Getenv(childStartEnv))
	for i := start; ; i++ {
		kind := storage.XFS
		if i%2 == 1 {
			kind = storage.Ext4
		}
		v := fmt.Sprintf("v%d", i%3)
		c := fmt.Sprintf("c%d", i%3)
		fmt.Println("OP", "remove")
		if err := b.Remove(ctx, v); err != nil {
			return err
		}
		fmt.Println("OP", "create")
		vol, _, err := b.Create(ctx, storage.Spec{Name: v, Kind: kind, Size: 1, Mode: 0o755})
		if err != nil {
			return err
		}
		if err := writeData(vol.Path); err != nil {
			return err
		}
		fmt.Println("OP", "expand")
		_, err = b.Expand(ctx, v, vol.Size+64<<20, storage.Online)
		if errors.Is(err, storage.ErrOfflineRequired) {
			if _, err = b.Expand(ctx, v, vol.Size+64<<20, storage.Offline); err == nil {
				_, err = b.Open(ctx, v)
			}
		}
		if err != nil {
			return err
		}
		fmt.Println("OP", "remove-clone")
		if err := b.Remove(ctx, c); err != nil {
			return err
		}
		fmt.Println("OP", "clone")
		if _, _, err := b.Clone(ctx, v, storage.Spec{Name: c, Kind: kind, Size: 1, Mode: 0o755}, nil); err != nil {
			return err
		}
		if i%4 == 3 {
			fmt.Println("OP", "archive")
			if _, err := b.Archive(ctx, c, timeNow()); err != nil {
				return err
			}
		}
	}
}
