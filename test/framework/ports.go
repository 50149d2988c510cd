package framework

import (
	"fmt"
	"net"
)

// FreePorts asks the kernel for n distinct free ports on 127.0.0.1. All
// listeners stay open until every port is chosen, so the n ports differ. The
// ports are closed on return, so another process may still take one before
// the caller binds it: callers should recognise "address already in use"
// and retry (Start does).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
