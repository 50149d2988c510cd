package framework

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Backend is one replica behind a ServiceProxy: the address its servers
// listen on and the URL of its readiness endpoint.
type Backend struct {
	Host     string // e.g. 127.0.0.2
	ReadyURL string // e.g. http://127.0.0.1:8080/readyz
}

// ServiceProxy stands in for a Kubernetes Service with kube-proxy: it
// listens on one address and ports, and forwards each new connection to the
// same port of the backend whose /readyz answers 200 (the first such, in
// order). Readiness is polled every ServicePollInterval, as endpoints follow pod
// readiness. Connections already forwarded stay where they are, even when
// their backend stops being ready, as established TCP flows do with
// kube-proxy (its conntrack entries outlive the endpoint): a server that
// lost its endpoint may still be reached by the clients it had.
type ServiceProxy struct {
	Host     string
	Ports    []int
	backends []Backend

	mu      sync.Mutex
	current int // index into backends, -1 for none
	conns   map[net.Conn]int
	lns     []net.Listener
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// ServicePollInterval is how often the proxy looks at the backends' readiness.
const ServicePollInterval = 100 * time.Millisecond

// StartServiceProxy listens on host:port for every port. Stop it with Close.
func StartServiceProxy(host string, ports []int, backends ...Backend) (*ServiceProxy, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &ServiceProxy{Host: host, Ports: ports, backends: backends, current: -1, conns: map[net.Conn]int{}, cancel: cancel}
	for _, port := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("service proxy: %w", err)
		}
		p.lns = append(p.lns, ln)
		p.done.Add(1)
		go p.accept(ln, port)
	}
	p.done.Add(1)
	go p.poll(ctx)
	return p, nil
}

// Current is the backend connections go to now, or nil.
func (p *ServiceProxy) Current() *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current < 0 {
		return nil
	}
	b := p.backends[p.current]
	return &b
}

func (p *ServiceProxy) poll(ctx context.Context) {
	defer p.done.Done()
	client := &http.Client{Timeout: 500 * time.Millisecond}
	for {
		next := -1
		for i, b := range p.backends {
			if ready(ctx, client, b.ReadyURL) {
				next = i
				break
			}
		}
		p.mu.Lock()
		p.current = next
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(ServicePollInterval):
		}
	}
}

func ready(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *ServiceProxy) accept(ln net.Listener, port int) {
	defer p.done.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c, port)
	}
}

func (p *ServiceProxy) forward(c net.Conn, port int) {
	p.mu.Lock()
	i := p.current
	p.mu.Unlock()
	if i < 0 {
		// No ready endpoint: refused, as a Service without endpoints does.
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(p.backends[i].Host, strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.conns == nil {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = i, i
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Close stops listening and closes every forwarded connection.
func (p *ServiceProxy) Close() {
	p.cancel()
	for _, ln := range p.lns {
		ln.Close()
	}
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.done.Wait()
}
