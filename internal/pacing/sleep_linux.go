package pacing

import (
	"time"

	"golang.org/x/sys/unix"
)

// Sleep blocks the thread in the kernel: a Go timer would wake the network poller and an idle
// thread of the runtime, which is what pacing saves.
func Sleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	_ = unix.Nanosleep(&ts, nil)
}
