//go:build unix

// Command dockbridge-helper is the in-container helper on its own (the tests build it static, as
// `make build` builds the CLI plugin); the CLI plugin binary contains the same code.
package main

import (
	"os"

	"github.com/dockbridge/dockbridge/internal/volumeops/helper"
)

func main() {
	os.Setenv(helper.EnvVar, "1")
	helper.Init()
}
