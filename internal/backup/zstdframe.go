package backup

import "github.com/klauspost/compress/zstd"

// frameEncoder compresses one chunk into one complete zstd frame (content size and checksum
// included), appended to dst. It is safe for concurrent use.
type frameEncoder interface {
	encodeFrame(src, dst []byte) ([]byte, error)
	close()
}

// zstdEncoderName names the zstd encoder this binary compresses with: "libzstd" and its version
// when it was built with the reference library (`make build` does when libzstd-dev is
// installed), else "go".
var zstdEncoderName = "go"

// newFrameEncoder makes the encoder zstd archives are written with.
var newFrameEncoder = newGoFrameEncoder

// goFrameEncoder is klauspost's pure-Go zstd at its fastest level (about zstd -1).
type goFrameEncoder struct{ enc *zstd.Encoder }

func newGoFrameEncoder(concurrency int) (frameEncoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(concurrency), zstd.WithWindowSize(8<<20))
	if err != nil {
		return nil, err
	}
	return &goFrameEncoder{enc}, nil
}

func (g *goFrameEncoder) encodeFrame(src, dst []byte) ([]byte, error) {
	return g.enc.EncodeAll(src, dst), nil
}

func (g *goFrameEncoder) close() { _ = g.enc.Close() }
