package localagent

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/dockbridge/dockbridge/internal/link"
	"github.com/dockbridge/dockbridge/internal/sshmux"
)

// Forwarder keeps one listener per published server port on the laptop and carries each
// connection through the shared SSH connection (an `ssh -W`-like channel on the ControlMaster,
// internal/sshmux). A port taken on the laptop gets the nearest free one.
type Forwarder struct {
	// Address is the listen address; "" is loopback.
	Address string
	// Master is the shared connection to open channels on (nil: none now).
	Master func() *sshmux.Master
	Log    *log.Logger
	// Notify tells the user about a port that could not be the same (nil: log only).
	Notify func(msg string)

	mu       sync.Mutex
	forwards map[int]*forward

	conns, bytes atomic.Int64
	open         atomic.Int64
}

type forward struct {
	port      link.Port
	local     int
	listeners []net.Listener
	note      string
}

// PortStatus is one forward as `docker dockbridge ports` shows it.
type PortStatus struct {
	// Local is the laptop's address, Port the server's port.
	Local      string   `json:"local"`
	Port       int      `json:"port"`
	Containers []string `json:"containers"`
	// Note says why Local's port differs from Port.
	Note string `json:"note,omitempty"`
}

// Update makes the forwards follow ports: new ports get a listener, gone ones lose it (open
// connections through them end with their containers). nil closes every listener.
func (f *Forwarder) Update(ports []link.Port) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.forwards == nil {
		f.forwards = map[int]*forward{}
	}
	want := map[int]link.Port{}
	for _, p := range ports {
		want[p.Port] = p
	}
	for port, fw := range f.forwards {
		if _, ok := want[port]; !ok {
			for _, l := range fw.listeners {
				l.Close()
			}
			delete(f.forwards, port)
			f.Log.Printf("port %d: forward closed (no container publishes it now)", port)
		}
	}
	for port, p := range want {
		if fw, ok := f.forwards[port]; ok {
			fw.port = p
			continue
		}
		local, ls, err := listenNearest(f.Address, port)
		if err != nil {
			f.Log.Printf("port %d: no listener on this machine: %v", port, err)
			f.forwards[port] = &forward{port: p, note: "not forwarded: " + err.Error()}
			continue
		}
		fw := &forward{port: p, local: local, listeners: ls}
		if local != port {
			fw.note = fmt.Sprintf("port %d is taken on this machine", port)
			msg := fmt.Sprintf("server port %d (%s) answers on %s: %s", port, joinNames(p.Containers), hostPort(f.Address, local), fw.note)
			f.Log.Print(msg)
			if f.Notify != nil {
				f.Notify(msg)
			}
		} else {
			f.Log.Printf("port %d (%s): forwarded", port, joinNames(p.Containers))
		}
		f.forwards[port] = fw
		for _, l := range ls {
			go f.serve(l, p)
		}
	}
}

// Status lists the forwards by server port.
func (f *Forwarder) Status() []PortStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]PortStatus, 0, len(f.forwards))
	for _, fw := range f.forwards {
		ps := PortStatus{Port: fw.port.Port, Containers: fw.port.Containers, Note: fw.note}
		if fw.local != 0 {
			ps.Local = hostPort(f.Address, fw.local)
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PortStatus) int { return a.Port - b.Port })
	return out
}

// Take returns and resets the connections and bytes carried since the last Take, and how many
// connections are open now.
func (f *Forwarder) Take() (conns, bytes int64, open int) {
	return f.conns.Swap(0), f.bytes.Swap(0), int(f.open.Load())
}

func (f *Forwarder) serve(l net.Listener, p link.Port) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go f.carry(c, p)
	}
}

// carry joins one laptop connection to a channel to the server's port. The master reads what
// the laptop sends from a pipe and writes the answer into another, so that each direction's
// end reaches the other side (a socket passed as both would never show the server's EOF).
func (f *Forwarder) carry(c net.Conn, p link.Port) {
	defer c.Close()
	m := f.Master()
	if m == nil {
		return
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return
	}
	ch, err := m.Forward(p.Target(), p.Port, inR, outW)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		f.Log.Printf("port %d: %v", p.Port, err)
		return
	}
	defer ch.Close()
	f.conns.Add(1)
	f.open.Add(1)
	defer f.open.Add(-1)
	done := make(chan struct{})
	go func() {
		n, _ := io.Copy(inW, c)
		f.bytes.Add(n)
		inW.Close()
		close(done)
	}()
	n, _ := io.Copy(c, outR)
	f.bytes.Add(n)
	outR.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	select {
	case <-done:
	case <-ch.Done():
		// The server side ended; the laptop's side may still be open: end it.
		c.Close()
		<-done
	}
}

// listenNearest listens on port, or the nearest free one (port+1, port-1, port+2, ...; at most
// 100 away, then any). Loopback ("" or "localhost") is 127.0.0.1 and, where the machine has it,
// ::1 on the same port: `localhost` means ::1 first on macOS.
func listenNearest(addr string, port int) (int, []net.Listener, error) {
	try := func(p int) ([]net.Listener, error) {
		if addr != "" && addr != "localhost" {
			l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(p)))
			if err != nil {
				return nil, err
			}
			return []net.Listener{l}, nil
		}
		l4, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return nil, err
		}
		l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(l4.Addr().(*net.TCPAddr).Port)))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				l4.Close()
				return nil, err
			}
			return []net.Listener{l4}, nil // no IPv6 loopback here
		}
		return []net.Listener{l4, l6}, nil
	}
	var last error
	for d := 0; d <= 100; d++ {
		cands := []int{port + d, port - d}
		if d == 0 {
			cands = cands[:1]
		}
		for _, p := range cands {
			if p < 1 || p > 65535 {
				continue
			}
			ls, err := try(p)
			if err == nil {
				return p, ls, nil
			}
			last = err
			if d == 0 && !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EACCES) {
				return 0, nil, err // the address itself is wrong
			}
		}
	}
	ls, err := try(0)
	if err != nil {
		return 0, nil, fmt.Errorf("%v; %w", last, err)
	}
	return ls[0].Addr().(*net.TCPAddr).Port, ls, nil
}

func hostPort(addr string, port int) string {
	if addr == "" || addr == "localhost" {
		addr = "localhost"
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

func joinNames(n []string) string {
	if len(n) == 0 {
		return "?"
	}
	s := n[0]
	if len(n) > 1 {
		s += fmt.Sprintf(" +%d", len(n)-1)
	}
	return s
}
