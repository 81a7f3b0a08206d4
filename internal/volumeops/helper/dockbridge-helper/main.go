// Command dockbridge-helper is the in-container helper on its own (tests and benchmarks build it
// with CGO_ENABLED=0); the CLI plugin binary contains the same code.
package main

import (
	"os"

	"github.com/dockbridge/dockbridge/internal/volumeops/helper"
)

func main() {
	os.Setenv(helper.EnvVar, "1")
	helper.Init()
}
