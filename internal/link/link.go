// Package link is the one background SSH session between the laptop agent (internal/localagent)
// and its server (`dockbridge-server local session`, internal/linkserver): its command, its
// messages, and the multiplexer that carries, on that one session of the one shared connection,
// a control stream (JSON lines both ways) and one stream per synchronized folder.
//
// The server's idle agent recognises the session by its command (IsSession) and does not count
// it, or its traffic, as activity: the laptop's background machinery must not keep a server up on
// its own. What the user does through it does count: the laptop agent reports the connections
// made through its port forwards (Forwarded), and the server writes them where the idle agent
// reads them (ForwardsFile).
package link

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mutagen-io/mutagen/pkg/multiplexing"
)

// ServerBinary is where `docker dockbridge up` installs the servers' binary on the host (the
// idle agent's binary: internal/idleagent.BinaryPath).
const ServerBinary = "/usr/local/lib/dockbridge/dockbridge-server"

// Command is the session's command line. exec: the shell sshd runs it in is replaced, so the
// session's process is the binary itself.
const Command = "exec " + ServerBinary + " local session"

// IsSession reports whether argv (a process's command line, after the user's shell) is the link
// session's server end.
func IsSession(argv []string) bool {
	// sshd runs the line with the user's shell ($SHELL -c LINE); exec replaces the shell at once,
	// but a look may come before it has.
	if len(argv) >= 3 && argv[1] == "-c" && strings.HasSuffix(strings.TrimPrefix(filepath.Base(argv[0]), "-"), "sh") {
		argv = strings.Fields(strings.Join(argv[2:], " "))
		if len(argv) > 0 && argv[0] == "exec" {
			argv = argv[1:]
		}
	}
	return len(argv) >= 3 && filepath.Base(argv[0]) == path.Base(ServerBinary) && argv[1] == "local" && argv[2] == "session"
}

// ForwardsFile is where the server end records the connections the laptop's forwards carried
// (ForwardsRecord, JSON), rewritten at every report: the idle agent counts a change as activity.
const ForwardsFile = "/run/dockbridge/forwards.json"

// ForwardsRecord is ForwardsFile's content.
type ForwardsRecord struct {
	// Connections and Bytes are totals since the server end started.
	Connections int64 `json:"connections"`
	Bytes       int64 `json:"bytes"`
	// Open is how many forwarded connections were open at the last report.
	Open int `json:"open"`
	// Last is when the last report came.
	Last time.Time `json:"last"`
}

// Message types.
const (
	// laptop → server
	TypeHello     = "hello"     // Version
	TypeShare     = "share"     // Path: register a folder (state syncing), mount its copy at Path
	TypeReady     = "ready"     // Path: its first synchronization is complete
	TypeUnshare   = "unshare"   // Path
	TypeForwarded = "forwarded" // Connections, Bytes, Open: what the forwards carried since the last report
	// server → laptop
	TypePorts     = "ports"      // Ports: every published TCP port, whenever the set changes
	TypeEngine    = "engine"     // Engine: "running" or "stopped"
	TypeChanged   = "changed"    // Paths: shared folders changed on the server
	TypeGoingDown = "going-down" // the server is stopping (idle self-delete, down)
	TypeReply     = "reply"      // ID, Error
)

// Version is the control protocol's version.
const Version = 1

// Message is one control message.
type Message struct {
	ID   uint64 `json:"id,omitempty"`
	Type string `json:"type"`

	Version int      `json:"version,omitempty"`
	Server  string   `json:"server,omitempty"`
	Path    string   `json:"path,omitempty"`
	Paths   []string `json:"paths,omitempty"`
	Ports   []Port   `json:"ports,omitempty"`
	Engine  string   `json:"engine,omitempty"`
	Error   string   `json:"error,omitempty"`

	Connections int64 `json:"connections,omitempty"`
	Bytes       int64 `json:"bytes,omitempty"`
	Open        int   `json:"open,omitempty"`
	// KeepCopy (unshare): leave the server's copy on the volume.
	KeepCopy bool `json:"keep_copy,omitempty"`
}

// Port is one TCP port published on the server.
type Port struct {
	Port int `json:"port"`
	// HostIP is the address it is published on ("0.0.0.0", "127.0.0.1", "::", or one address).
	HostIP string `json:"host_ip"`
	// Containers publishing it (names).
	Containers []string `json:"containers"`
}

// Target is the address the server side connects to for p.
func (p Port) Target() string {
	switch p.HostIP {
	case "", "0.0.0.0", "::":
		return "127.0.0.1"
	}
	return p.HostIP
}

// SyncHeader opens a folder's stream: one JSON line before the synchronization endpoint's protocol.
type SyncHeader struct {
	Path string `json:"path"`
}

// Mux is the multiplexer on the session's stdin and stdout. The laptop end (even=false) opens
// the control stream first, then one stream per synchronization endpoint; the server end
// (even=true) accepts them.
func Mux(rw io.ReadWriteCloser, server bool) *multiplexing.Multiplexer {
	cfg := multiplexing.DefaultConfiguration()
	// No heartbeats: a session that says nothing is what lets the server count it idle; a lost
	// connection shows when ssh's own keepalives (ServerAliveInterval) give up.
	cfg.HeartbeatTransmitInterval = 0
	cfg.MaximumHeartbeatReceiveInterval = 0
	// 1 MiB per stream: a 64 KiB window would cap a folder's first synchronization at
	// 64 KiB per round trip (3 MB/s at 20 ms).
	cfg.StreamReceiveWindow = 1 << 20
	return multiplexing.Multiplex(multiplexing.NewCarrierFromStream(rw), server, cfg)
}

// Conn is one end of the control stream: Send from any goroutine, Recv from one.
type Conn struct {
	rw  io.ReadWriteCloser
	dec *json.Decoder
	mu  sync.Mutex
	enc *json.Encoder
}

// NewConn wraps a control stream.
func NewConn(rw io.ReadWriteCloser) *Conn {
	return &Conn{rw: rw, dec: json.NewDecoder(bufio.NewReader(rw)), enc: json.NewEncoder(rw)}
}

// Send writes one message.
func (c *Conn) Send(m Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(m)
}

// Recv reads the next message.
func (c *Conn) Recv() (Message, error) {
	var m Message
	err := c.dec.Decode(&m)
	return m, err
}

// Close closes the stream.
func (c *Conn) Close() error { return c.rw.Close() }

// ReadHeader reads a stream's first line without reading past it (the rest belongs to the
// synchronization endpoint).
func ReadHeader(r io.Reader, v any) error {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 64<<10 {
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		if b[0] == '\n' {
			return json.Unmarshal(line, v)
		}
		line = append(line, b[0])
	}
	return errors.New("stream header longer than 64 KiB")
}

// WriteHeader writes a stream's first line.
func WriteHeader(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Calls matches replies to requests on a Conn.
type Calls struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan Message
}

// Call sends m with a new ID and waits for its reply (an error when the reply says one).
func (cs *Calls) Call(ctx context.Context, c *Conn, m Message) (Message, error) {
	cs.mu.Lock()
	if cs.pending == nil {
		cs.pending = map[uint64]chan Message{}
	}
	cs.next++
	m.ID = cs.next
	ch := make(chan Message, 1)
	cs.pending[m.ID] = ch
	cs.mu.Unlock()
	defer func() {
		cs.mu.Lock()
		delete(cs.pending, m.ID)
		cs.mu.Unlock()
	}()
	if err := c.Send(m); err != nil {
		return Message{}, err
	}
	select {
	case r := <-ch:
		if r.Error != "" {
			return r, errors.New(r.Error)
		}
		return r, nil
	case <-ctx.Done():
		return Message{}, fmt.Errorf("%s %s: no answer from the server: %w", m.Type, m.Path, ctx.Err())
	}
}

// Reply hands a reply to its Call; it reports whether one waited.
func (cs *Calls) Reply(m Message) bool {
	cs.mu.Lock()
	ch, ok := cs.pending[m.ID]
	cs.mu.Unlock()
	if ok {
		ch <- m
	}
	return ok
}

// FailAll ends every waiting Call (the connection is gone).
func (cs *Calls) FailAll(err error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for id, ch := range cs.pending {
		ch <- Message{ID: id, Type: TypeReply, Error: err.Error()}
		delete(cs.pending, id)
	}
}
