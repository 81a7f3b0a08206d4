//go:build !unix

package schedule

import (
	"context"
	"errors"
)

func lock(context.Context, string) (func(), error) {
	return nil, errors.New("scheduled backups run on Linux servers only")
}

func locked(string) bool { return false }
