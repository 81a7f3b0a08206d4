//go:build !linux

package pacing

import "time"

// Sleep sleeps d.
func Sleep(d time.Duration) { time.Sleep(d) }
