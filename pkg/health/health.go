// Package health serves the provisioner's liveness and readiness endpoints,
// and its metrics on the same listener.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"
)

// Check returns nil when what it checks is fine.
type Check func() error

// Handler answers /healthz from live and /readyz from ready: 200 "ok" when
// every check passes, else 503 with the first failure.
func Handler(live, ready []Check) http.Handler { return Mux(live, ready, nil) }

// Mux serves /healthz and /readyz as Handler does, and /metrics from
// metrics when that is not nil: one listener for all three.
func Mux(live, ready []Check, metrics http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/healthz", checks(live))
	mux.Handle("/readyz", checks(ready))
	if metrics != nil {
		mux.Handle("/metrics", metrics)
	}
	return mux
}

func checks(cs []Check) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for _, c := range cs {
			if err := c(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	}
}

// Serve listens on addr and serves h until ctx ends. It returns once the
// listener is open, so a port clash is a start-up error, not a log line.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health and metrics endpoints on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Health endpoints stopped", "address", addr)
		}
	}()
	klog.InfoS("Serving health and metrics endpoints", "address", ln.Addr().String())
	return nil
}
