//go:build !linux

package mount

import "os"

func openUncached(device string) (*os.File, error) { return os.Open(device) }

func alignedBuffer(n int) []byte { return make([]byte, n) }

func openExclusive(device string) (*os.File, error) { return os.Open(device) }
