// Package ui renders what dockbridge shows a person: progress on stderr (a spinner on a
// terminal, plain "Waiting for ... done" lines otherwise, like the hcloud CLI), tables
// and JSON on stdout.
package ui

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress shows one step at a time on w (stderr) and remembers how long each took.
// The zero value is not usable; use NewProgress.
type Progress struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	mu    sync.Mutex
	steps []StepResult
}

// StepResult is a finished step.
type StepResult struct {
	Title    string        `json:"step"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	Note     string        `json:"note,omitempty"`
	Failed   bool          `json:"failed,omitempty"`
}

// NewProgress writes progress to w; tty selects the spinner. A nil w discards it.
func NewProgress(w io.Writer, tty bool) *Progress {
	if w == nil {
		w = io.Discard
	}
	return &Progress{w: w, tty: tty, now: time.Now}
}

// Step is a running step; finish it with Done, Fail or Note+Done.
type Step struct {
	p     *Progress
	title string
	start time.Time
	note  string
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Start begins a step titled like "Waiting for the server to boot".
func (p *Progress) Start(title string) *Step {
	s := &Step{p: p, title: title, start: p.now(), stop: make(chan struct{})}
	if !p.tty {
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s ... ", title)
		p.mu.Unlock()
		return s
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r\033[K%s %s (%s)", spinnerFrames[i%len(spinnerFrames)], s.title, roundDur(p.now().Sub(s.start)))
			p.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Note attaches a short remark shown when the step ends, e.g. "found 42" or "created 42".
func (s *Step) Note(format string, args ...any) { s.note = fmt.Sprintf(format, args...) }

// Done ends the step successfully.
func (s *Step) Done() { s.finish(nil) }

// Fail ends the step with err (err is not printed here; the caller reports it).
func (s *Step) Fail(err error) { s.finish(err) }

// End ends the step with Done when *errp is nil and Fail otherwise: defer st.End(&err).
func (s *Step) End(errp *error) {
	if errp != nil && *errp != nil {
		s.Fail(*errp)
		return
	}
	s.Done()
}

func (s *Step) finish(err error) {
	s.once.Do(func() {
		p := s.p
		if p.tty {
			close(s.stop)
			s.wg.Wait()
		}
		d := p.now().Sub(s.start)
		word := "done"
		if err != nil {
			word = "failed"
		}
		extra := roundDur(d).String()
		if s.note != "" {
			extra = s.note + ", " + extra
		}
		p.mu.Lock()
		if p.tty {
			mark := "✓"
			if err != nil {
				mark = "✗"
			}
			fmt.Fprintf(p.w, "\r\033[K%s %s ... %s (%s)\n", mark, s.title, word, extra)
		} else {
			fmt.Fprintf(p.w, "%s (%s)\n", word, extra)
		}
		p.steps = append(p.steps, StepResult{Title: s.title, Duration: d, Seconds: roundDur(d).Seconds(), Note: s.note, Failed: err != nil})
		p.mu.Unlock()
	})
}

// Printf writes a line of information between steps (never while one runs on a terminal).
func (p *Progress) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// Steps returns the finished steps in order.
func (p *Progress) Steps() []StepResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]StepResult(nil), p.steps...)
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
