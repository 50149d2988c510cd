package health

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMuxServesAllThree: one handler answers the probes from their checks
// and /metrics from the metrics handler.
func TestMuxServesAllThree(t *testing.T) {
	notReady := func() error { return errors.New("still reconciling") }
	ok := func() error { return nil }
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "some_metric 1\n") })
	srv := httptest.NewServer(Mux([]Check{ok}, []Check{ok, notReady}, metrics))
	defer srv.Close()
	for _, c := range []struct {
		path, body string
		code       int
	}{
		{"/healthz", "ok", 200},
		{"/readyz", "still reconciling", 503},
		{"/metrics", "some_metric 1", 200},
		{"/other", "404", 404},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.body) {
			t.Errorf("%s: %d %q, want %d with %q", c.path, resp.StatusCode, body, c.code, c.body)
		}
	}
	// Without a metrics handler there is no /metrics.
	srv2 := httptest.NewServer(Handler([]Check{ok}, []Check{ok}))
	defer srv2.Close()
	resp, err := http.Get(srv2.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/metrics without a handler: %d", resp.StatusCode)
	}
}
