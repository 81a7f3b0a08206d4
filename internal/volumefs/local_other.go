//go:build !linux

package volumefs

import "context"

// Local runs the procedures in this process; outside Linux it refuses (ErrUnsupported).
func Local() Server { return unsupported{} }

type unsupported struct{}

func (unsupported) Where() string { return "this machine" }

func (unsupported) Grow(context.Context, GrowRequest) (*GrowResult, error) {
	return nil, ErrUnsupported
}

func (unsupported) Fsck(context.Context, FsckRequest) (*FsckResult, error) {
	return nil, ErrUnsupported
}
