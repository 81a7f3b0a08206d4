//go:build !linux

package fswatch

import (
	"context"
	"errors"
)

var errNoNative = errors.New("no native watch")

func watchNative(context.Context, string, Options, func()) error { return errNoNative }
