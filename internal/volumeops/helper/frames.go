package helper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The archive reaches `restore` on stdin in frames: a 4-byte big-endian length and that many
// bytes; a frame of length 0 ends the archive and is followed by one verdict byte. The plugin
// hashes the stored archive while it sends it and only knows at its end whether the checksum
// matches: it says so in the verdict, and the helper keeps what it extracted only after
// VerdictOK (otherwise it empties the volume again). A stream that ends without a verdict is a
// failure too.
const (
	VerdictOK  byte = 'K'
	VerdictBad byte = 'X'
)

// ErrVerdict is the helper's failure when the plugin did not confirm the archive's checksum.
var ErrVerdict = errors.New("the archive's checksum was not confirmed")

// FrameReader reads the archive out of the framed stream; it returns io.EOF at the end frame,
// after which Verdict tells what the plugin found.
type FrameReader struct {
	r       io.Reader
	left    uint32 // bytes left in the current frame
	ended   bool
	verdict byte
	hdr     [4]byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

func (f *FrameReader) Read(p []byte) (int, error) {
	if f.ended {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	for f.left == 0 {
		if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
			return 0, fmt.Errorf("archive stream: %w", noEOF(err))
		}
		f.left = binary.BigEndian.Uint32(f.hdr[:])
		if f.left == 0 {
			if _, err := io.ReadFull(f.r, f.hdr[:1]); err != nil {
				return 0, fmt.Errorf("archive stream: no verdict: %w", noEOF(err))
			}
			f.ended, f.verdict = true, f.hdr[0]
			return 0, io.EOF
		}
	}
	n, err := f.r.Read(p[:min(uint32(len(p)), f.left)])
	f.left -= uint32(n)
	if err == io.EOF {
		err = nil
		if n == 0 {
			err = fmt.Errorf("archive stream: %w", io.ErrUnexpectedEOF)
		}
	}
	return n, err
}

// Verdict returns the plugin's verdict once the end frame was read.
func (f *FrameReader) Verdict() error {
	switch {
	case !f.ended:
		return fmt.Errorf("%w: the stream did not reach its end", ErrVerdict)
	case f.verdict != VerdictOK:
		return fmt.Errorf("%w: the plugin found it wrong", ErrVerdict)
	}
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// FramedSource makes the framed stream from src (plugin side). At src's end it calls check
// and sends VerdictOK only if check returns nil; CheckErr keeps check's error.
type FramedSource struct {
	src      io.Reader
	check    func() error
	checkErr error
	pending  []byte // bytes of a frame not yet handed out
	buf      []byte
	srcErr   error // src's error, returned after the bytes that came with it
	done     bool
}

// NewFramedSource frames src; check runs once, when src is exhausted.
func NewFramedSource(src io.Reader, check func() error) *FramedSource {
	return &FramedSource{src: src, check: check}
}

// CheckErr is check's error (nil before the end of src or when the archive was right).
func (f *FramedSource) CheckErr() error { return f.checkErr }

func (f *FramedSource) Read(p []byte) (int, error) {
	if len(f.pending) > 0 {
		n := copy(p, f.pending)
		f.pending = f.pending[n:]
		return n, nil
	}
	if f.done {
		return 0, io.EOF
	}
	// Read straight behind a header in p when it has room: no extra copy.
	dst, direct := p, len(p) > 4
	if !direct {
		if f.buf == nil {
			f.buf = make([]byte, 4+64<<10)
		}
		dst = f.buf
	}
	var n int
	err := f.srcErr
	if err == nil {
		n, err = f.src.Read(dst[4:min(len(dst), 4+1<<30)])
	}
	if n > 0 {
		f.srcErr = err // EOF or an error: on the next call
		binary.BigEndian.PutUint32(dst, uint32(n))
		if direct {
			return 4 + n, nil
		}
		f.pending = dst[:4+n]
		return f.Read(p)
	}
	switch {
	case err == io.EOF:
		f.done = true
		verdict := VerdictOK
		if f.checkErr = f.check(); f.checkErr != nil {
			verdict = VerdictBad
		}
		f.pending = []byte{0, 0, 0, 0, verdict}
		return f.Read(p)
	case err != nil:
		return 0, err
	}
	return 0, nil
}
