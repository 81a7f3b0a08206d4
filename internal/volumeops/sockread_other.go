//go:build !linux

package volumeops

import "net"

type socketReader struct{}

func newSocketReader(net.Conn) *socketReader { return nil }

func (*socketReader) Read([]byte) (int, error) { return 0, nil }
func (*socketReader) shutdown()                {}
func (*socketReader) Close() error             { return nil }
