//go:build serverbin

package serverbin

import "embed"

// The Makefile compresses the server binaries into payload/ and then builds the CLI with
// -tags serverbin; without the files this build fails, which is the point: a release never
// ships without them.
//
//go:embed payload/*.zst
var embedded embed.FS

func init() { payload = embedded }
