package workerpool

import (
	"bufio"
	"errors"
	"io"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// forwardOutput turns each line a worker prints into a log entry. A Python traceback
// (from "Traceback (most recent call last):" to its exception line) becomes one entry,
// so it reads as one event in the log.
func forwardOutput(r io.ReadCloser, log *zap.Logger, level zapcore.Level, stream string) {
	defer r.Close()
	emit := func(text string) {
		if ce := log.Check(level, text); ce != nil {
			ce.Write(zap.String("stream", stream))
		}
	}
	var tb tracebackJoiner
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if text, ok := tb.add(strings.TrimRight(string(line), "\r\n")); ok {
				emit(text)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if text, ok := tb.flush(); ok {
				emit(text)
			}
			return
		}
	}
}

// tracebackJoiner groups the lines of a Python traceback.
type tracebackJoiner struct{ lines []string }

// add takes one line and returns a complete entry, if there is one.
func (t *tracebackJoiner) add(line string) (string, bool) {
	if len(t.lines) == 0 {
		if line == "Traceback (most recent call last):" {
			t.lines = append(t.lines, line)
			return "", false
		}
		return line, true
	}
	t.lines = append(t.lines, line)
	continuation := line == "" || line[0] == ' ' || line[0] == '\t' ||
		line == "Traceback (most recent call last):" ||
		strings.HasPrefix(line, "During handling of the above exception") ||
		strings.HasPrefix(line, "The above exception was the direct cause")
	if continuation && len(t.lines) < 500 {
		return "", false
	}
	return t.flush()
}

func (t *tracebackJoiner) flush() (string, bool) {
	if len(t.lines) == 0 {
		return "", false
	}
	text := strings.Join(t.lines, "\n")
	t.lines = t.lines[:0]
	return text, true
}
