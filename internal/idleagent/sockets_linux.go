package idleagent

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpEntry is one line of /proc/net/tcp or tcp6.
type tcpEntry struct {
	localPort      uint16
	remoteAddr     string // IP
	remoteHostPort string // IP:port
	listen         bool
	established    bool
}

// readTCP maps socket inodes to TCP sockets of this network namespace.
func readTCP(procRoot string) map[uint64]tcpEntry {
	out := map[uint64]tcpEntry{}
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(filepath.Join(procRoot, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 {
				continue
			}
			ino, err := strconv.ParseUint(fs[9], 10, 64)
			if err != nil || ino == 0 {
				continue
			}
			_, lport, ok1 := parseHexAddr(fs[1])
			rip, rport, ok2 := parseHexAddr(fs[2])
			if !ok1 || !ok2 {
				continue
			}
			out[ino] = tcpEntry{
				localPort: lport, remoteAddr: rip.String(), remoteHostPort: net.JoinHostPort(rip.String(), strconv.Itoa(int(rport))),
				listen: fs[3] == "0A", established: fs[3] == "01",
			}
		}
	}
	return out
}

// parseHexAddr reads "0100007F:0016" (IPv4) or 32 hex digits and a port (IPv6): the address in
// 32-bit words of host byte order, the port in big-endian hex.
func parseHexAddr(s string) (net.IP, uint16, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, false
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, 0, false
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(ip[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return ip, uint16(port), true
}

// unixSock is one Unix socket as sock_diag describes it.
type unixSock struct {
	typ  uint8
	peer uint64
	name string
}

const sockStream = syscall.SOCK_STREAM

// The sock_diag interface for AF_UNIX (linux/unix_diag.h); x/sys/unix does not carry it.
const (
	udiagShowName = 0x1
	udiagShowPeer = 0x4
	unixDiagName  = 0
	unixDiagPeer  = 2
)

type unixDiagReq struct {
	Family   uint8
	Protocol uint8
	Pad      uint16
	States   uint32
	Ino      uint32
	Show     uint32
	Cookie   [2]uint32
}

type unixDiagMsg struct {
	Family uint8
	Type   uint8
	State  uint8
	Pad    uint8
	Ino    uint32
	Cookie [2]uint32
}

// readUnixSockets dumps every Unix socket of this network namespace with its peer and name
// (sock_diag over netlink, as `ss -x` does). On failure (a kernel without unix_diag) it returns
// an empty map: Unix-socket forwards are then not seen, the rest is.
func readUnixSockets() map[uint64]unixSock {
	out := map[uint64]unixSock{}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return out
	}
	defer unix.Close(fd)
	req := unixDiagReq{Family: unix.AF_UNIX, States: 0xffffffff, Show: udiagShowName | udiagShowPeer}
	hdr := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + unsafe.Sizeof(req)),
		Type:  unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP,
		Seq:   1,
	}
	buf := make([]byte, hdr.Len)
	*(*unix.NlMsghdr)(unsafe.Pointer(&buf[0])) = hdr
	*(*unixDiagReq)(unsafe.Pointer(&buf[unix.SizeofNlMsghdr])) = req
	if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return out
	}
	rb := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, rb, 0)
		if err != nil {
			return out
		}
		msgs, err := syscall.ParseNetlinkMessage(rb[:n])
		if err != nil {
			return out
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				return out
			}
			if len(m.Data) < int(unsafe.Sizeof(unixDiagMsg{})) {
				continue
			}
			dm := *(*unixDiagMsg)(unsafe.Pointer(&m.Data[0]))
			us := unixSock{typ: dm.Type}
			attrs := m.Data[unsafe.Sizeof(unixDiagMsg{}):]
			for len(attrs) >= 4 {
				l := int(binary.NativeEndian.Uint16(attrs[0:2]))
				t := binary.NativeEndian.Uint16(attrs[2:4])
				if l < 4 || l > len(attrs) {
					break
				}
				v := attrs[4:l]
				switch t {
				case unixDiagPeer:
					if len(v) >= 4 {
						us.peer = uint64(binary.NativeEndian.Uint32(v))
					}
				case unixDiagName:
					name := string(v)
					if strings.HasPrefix(name, "\x00") {
						name = "@" + name[1:]
					}
					us.name = strings.TrimRight(name, "\x00")
				}
				attrs = attrs[(l+3)&^3:]
			}
			out[uint64(dm.Ino)] = us
		}
	}
}
