package workerpool

import (
	"strings"
	"testing"
)

func TestFileLimit(t *testing.T) {
	if err := fileLimitError(1000, 1024); err == nil || !strings.Contains(err.Error(), "LimitNOFILE") {
		t.Errorf("1000 channels under a hard limit of 1024: %v", err)
	}
	if err := fileLimitError(1000, 524288); err != nil {
		t.Errorf("1000 channels under systemd's default hard limit: %v", err)
	}
}
