package cli

import (
	"cmp"
	"context"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/serverbin"
	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/version"
)

// versionCmd is `docker dockbridge version` (`docker dockbridge --version` is the one line).
func versionCmd(d deps) *cobra.Command {
	return spec[*version.Info]{
		Use:     "version [OPTIONS]",
		Short:   "Show the version, commit and build date of docker-dockbridge",
		Formats: tableOrJSON,
		Run: func(context.Context, *cobra.Command, []string) (*version.Info, error) {
			i := version.Get()
			i.ServerBinaries = []string{}
			for _, a := range serverbin.Embedded() {
				i.ServerBinaries = append(i.ServerBinaries, "linux/"+a)
			}
			return &i, nil
		},
		Print: func(w io.Writer, _ string, i *version.Info) error {
			return ui.KeyValues(w, [][2]string{{"Version", i.Version}, {"Commit", i.Commit}, {"Built", i.BuildDate},
				{"Go version", i.GoVersion}, {"OS/Arch", i.Platform},
				{"Server binaries", cmp.Or(strings.Join(i.ServerBinaries, ", "), "none (a plain go build: see make build)")}})
		},
	}.build(d.out)
}
