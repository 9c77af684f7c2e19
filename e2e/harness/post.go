package harness

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// PostJSON sends body to url and reads the whole answer, as a load
// generator does: anything but a 200 is an error.
func PostJSON(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
