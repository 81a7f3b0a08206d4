// Package sshmux opens channels on an OpenSSH ControlMaster's shared connection by speaking its
// multiplexing protocol (OpenSSH's PROTOCOL.mux, version 4) on the ControlPath socket: a TCP
// forward or a command is one more channel on the connection docker commands already use, with no
// new ssh process and no new connection. It never connects to a server itself: without a master
// it fails (ErrNoMaster), so nothing here can wake a server that is down.
package sshmux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Message types of PROTOCOL.mux.
const (
	msgHello          = 0x00000001
	cNewSession       = 0x10000002
	cAliveCheck       = 0x10000004
	cTerminate        = 0x10000005
	cNewStdioFwd      = 0x10000008
	sOK               = 0x80000001
	sPermissionDenied = 0x80000002
	sFailure          = 0x80000003
	sExitMessage      = 0x80000004
	sAlive            = 0x80000005
	sSessionOpened    = 0x80000006
	sTTYAllocFail     = 0x80000008
	protocolVersion   = 4
	maxPacket         = 256 << 10
)

// ErrNoMaster means no ControlMaster listens on the socket (none was started, or it exited).
var ErrNoMaster = errors.New("no SSH ControlMaster on the socket")

// Master is the control socket of one shared connection.
type Master struct {
	// Path is the ControlPath socket.
	Path string
	// Timeout bounds connecting to the socket and the master's answer to a request (default 10s).
	Timeout time.Duration
}

var requestID atomic.Uint32

func (m Master) timeout() time.Duration {
	if m.Timeout > 0 {
		return m.Timeout
	}
	return 10 * time.Second
}

// dial connects to the control socket and exchanges the hellos.
func (m Master) dial() (*net.UnixConn, error) {
	d := net.Dialer{Timeout: m.timeout()}
	c, err := d.Dial("unix", m.Path)
	if err != nil {
		var se syscall.Errno
		if errors.As(err, &se) && (se == syscall.ENOENT || se == syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s)", ErrNoMaster, m.Path)
		}
		return nil, fmt.Errorf("connect to the SSH control socket %s: %w", m.Path, err)
	}
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(m.timeout()))
	if err := writePacket(uc, u32(msgHello), u32(protocolVersion)); err != nil {
		uc.Close()
		return nil, err
	}
	p, err := readPacket(uc)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("SSH control socket %s: no hello: %w", m.Path, err)
	}
	if typ, _ := p.u32(); typ != msgHello {
		uc.Close()
		return nil, fmt.Errorf("SSH control socket %s: expected a hello, got message %#x", m.Path, typ)
	}
	if v, _ := p.u32(); v != protocolVersion {
		uc.Close()
		return nil, fmt.Errorf("SSH control socket %s: multiplexing protocol version %d, want %d", m.Path, v, protocolVersion)
	}
	return uc, nil
}

// Alive asks the master whether it runs; it returns the master's process id.
func (m Master) Alive() (int, error) {
	c, err := m.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	id := requestID.Add(1)
	if err := writePacket(c, u32(cAliveCheck), u32(id)); err != nil {
		return 0, err
	}
	p, err := readPacket(c)
	if err != nil {
		return 0, fmt.Errorf("SSH master alive check: %w", err)
	}
	typ, _ := p.u32()
	if typ != sAlive {
		return 0, p.failure(typ, "alive check")
	}
	_, _ = p.u32() // our request id
	pid, err := p.u32()
	return int(pid), err
}

// Terminate asks the master to close the shared connection and exit.
func (m Master) Terminate() error {
	c, err := m.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := writePacket(c, u32(cTerminate), u32(requestID.Add(1))); err != nil {
		return err
	}
	p, err := readPacket(c)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an older master closes without answering
		}
		return err
	}
	if typ, _ := p.u32(); typ != sOK {
		return p.failure(typ, "terminate")
	}
	return nil
}

// Channel is an open channel: a forward or a session. Its control connection stays open while the
// channel lives.
type Channel struct {
	ctl       *net.UnixConn
	sessionID uint32
	once      sync.Once
	done      chan struct{}
	exit      int
	err       error
}

// Wait returns when the master ends the channel: for a session, with the command's exit status
// (-1 when the master closed without one, as when the connection is lost).
func (c *Channel) Wait() (int, error) {
	<-c.done
	return c.exit, c.err
}

// Done is closed when the channel has ended.
func (c *Channel) Done() <-chan struct{} { return c.done }

// Close ends the channel from this side: closing the control connection makes the master close
// the channel (OpenSSH closes the channel of a mux client that goes away).
func (c *Channel) Close() error {
	c.once.Do(func() { c.ctl.Close() })
	<-c.done
	return nil
}

func (c *Channel) watch(session bool) {
	defer close(c.done)
	c.exit = -1
	for {
		p, err := readPacket(c.ctl)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
				c.err = err
			}
			c.once.Do(func() { c.ctl.Close() })
			return
		}
		typ, _ := p.u32()
		if session && typ == sExitMessage {
			if sid, _ := p.u32(); sid == c.sessionID {
				v, _ := p.u32()
				c.exit = int(v)
			}
			continue // the master closes the socket next
		}
		if typ == sTTYAllocFail {
			continue
		}
	}
}

// Forward opens a direct-tcpip channel to host:port as the server sees it (`ssh -W`): the master
// reads what to send from in and writes what comes back to out (pipes work; the master closes
// out when the server side ends, and sends the server an EOF when in reaches its end).
func (m Master) Forward(host string, port int, in, out *os.File) (*Channel, error) {
	c, err := m.dial()
	if err != nil {
		return nil, err
	}
	id := requestID.Add(1)
	if err := writePacket(c, u32(cNewStdioFwd), u32(id), str(""), str(host), u32(uint32(port))); err != nil {
		c.Close()
		return nil, err
	}
	return m.opened(c, id, "forward to "+net.JoinHostPort(host, fmt.Sprint(port)), false, in, out)
}

// Session runs command on the server in a session channel (no terminal, no agent or X11
// forwarding), with stdin, stdout and stderr given to the master. (No environment: the master
// would send only what its own SendEnv names.)
func (m Master) Session(command string, stdin, stdout, stderr *os.File) (*Channel, error) {
	c, err := m.dial()
	if err != nil {
		return nil, err
	}
	id := requestID.Add(1)
	if err := writePacket(c, u32(cNewSession), u32(id), str(""), u32(0), u32(0), u32(0), u32(0), u32(0xffffffff), str(""), str(command)); err != nil {
		c.Close()
		return nil, err
	}
	return m.opened(c, id, "session", true, stdin, stdout, stderr)
}

// opened passes the channel's descriptors and reads the master's answer.
func (m Master) opened(c *net.UnixConn, id uint32, what string, session bool, files ...*os.File) (*Channel, error) {
	for _, f := range files {
		if err := sendFD(c, f); err != nil {
			c.Close()
			return nil, fmt.Errorf("SSH %s: pass a descriptor to the master: %w", what, err)
		}
	}
	p, err := readPacket(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("SSH %s: the master did not answer: %w", what, err)
	}
	typ, _ := p.u32()
	if typ != sSessionOpened {
		c.Close()
		return nil, p.failure(typ, what)
	}
	_, _ = p.u32() // our request id
	sid, _ := p.u32()
	_ = c.SetDeadline(time.Time{})
	ch := &Channel{ctl: c, sessionID: sid, done: make(chan struct{})}
	go ch.watch(session)
	return ch, nil
}

// packet is a message being read.
type packet struct{ b []byte }

func (p *packet) u32() (uint32, error) {
	if len(p.b) < 4 {
		return 0, io.ErrUnexpectedEOF
	}
	v := binary.BigEndian.Uint32(p.b)
	p.b = p.b[4:]
	return v, nil
}

func (p *packet) str() (string, error) {
	n, err := p.u32()
	if err != nil || uint32(len(p.b)) < n {
		return "", io.ErrUnexpectedEOF
	}
	s := string(p.b[:n])
	p.b = p.b[n:]
	return s, nil
}

// failure turns a refusal into an error with the master's reason.
func (p *packet) failure(typ uint32, what string) error {
	switch typ {
	case sPermissionDenied, sFailure:
		_, _ = p.u32()
		reason, _ := p.str()
		return fmt.Errorf("SSH %s refused by the master: %s", what, reason)
	}
	return fmt.Errorf("SSH %s: unexpected answer %#x from the master", what, typ)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func str(s string) []byte { return append(u32(uint32(len(s))), s...) }

func writePacket(w io.Writer, fields ...[]byte) error {
	n := 0
	for _, f := range fields {
		n += len(f)
	}
	b := make([]byte, 0, 4+n)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for _, f := range fields {
		b = append(b, f...)
	}
	_, err := w.Write(b)
	return err
}

func readPacket(r io.Reader) (*packet, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > maxPacket {
		return nil, fmt.Errorf("mux packet of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return &packet{b: b}, nil
}
