package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/openapi"
)

func init() {
	caddy.RegisterModule(Media{})
}

// The ways dingtalk_media hands out a file.
const (
	mediaRedirect = "redirect"
	mediaProxy    = "proxy"
)

// defaultMediaMaxSize is the largest file proxy mode serves by default.
const defaultMediaMaxSize = 20 << 20

// Media serves the files robots receive (pictures, audio, video, files, a
// richText's pictures) to backends that hold no DingTalk credential: a
// `GET /<downloadCode>` (the path after any prefix the route strips) is
// resolved with the robot's access token into DingTalk's temporary URL of
// the file, and answered with a redirect to it (mode redirect, the default)
// or with the file's bytes (mode proxy). A callback's codes are the
// `{http.dingtalk.download_code}` and `{http.dingtalk.download_codes}`
// placeholders. Like dingtalk_send it is an internal door: only backends
// should reach it.
//
// It answers 404 for a code DingTalk does not know, 429 (with Retry-After)
// when the robot's api_rate allows no call within a second, and 502 when
// DingTalk fails or, in proxy mode, the file is larger than max_size.
type Media struct {
	RobotRef

	// redirect (default): answer 302 to DingTalk's temporary URL, which the
	// client fetches itself; proxy: fetch the file and stream its bytes.
	Mode string `json:"mode,omitempty"`

	// In proxy mode, the largest file served, in bytes. A file announced
	// larger is answered 502; one that turns out larger is cut off.
	// Default: 20 MiB.
	MaxSize int64 `json:"max_size,omitempty"`

	logger *zap.Logger
	fetch  *http.Client
}

// CaddyModule returns the Caddy module information.
func (Media) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.dingtalk_media",
		New: func() caddy.Module { return new(Media) },
	}
}

// Provision checks the mode and sets up the robot's own client, if any.
func (m *Media) Provision(ctx caddy.Context) error {
	m.logger = ctx.Logger()
	if m.Mode == "" {
		m.Mode = mediaRedirect
	}
	if m.Mode != mediaRedirect && m.Mode != mediaProxy {
		return fmt.Errorf("dingtalk_media: mode must be redirect or proxy, not %q", m.Mode)
	}
	if m.MaxSize < 0 {
		return errors.New("dingtalk_media: max_size must not be negative")
	}
	if m.MaxSize == 0 {
		m.MaxSize = defaultMediaMaxSize
	}
	m.fetch = &http.Client{}
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	return m.provision("dingtalk_media")
}

// Cleanup releases the robot's own client.
func (m *Media) Cleanup() error {
	m.cleanup()
	return nil
}

// ServeHTTP resolves the download code and redirects to, or streams, the file.
func (m *Media) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return m.fail(r, http.StatusMethodNotAllowed, errors.New("dingtalk_media takes GET"))
	}
	code := strings.TrimPrefix(r.URL.Path, "/")
	if code == "" {
		return m.fail(r, http.StatusNotFound, errors.New("no download code in the path"))
	}
	robot, err := m.robot()
	if err != nil {
		return m.fail(r, http.StatusInternalServerError, fmt.Errorf("%w: %v", errNoRobot, err))
	}
	ctx, cancel := context.WithTimeout(r.Context(), sendTimeout)
	defer cancel()
	url, err := robot.client.DownloadURL(openapi.WithBudgetWait(ctx, sendBudgetWait), code)
	if err != nil {
		status := sendStatus(w, err)
		if status == http.StatusBadRequest {
			status = http.StatusNotFound // DingTalk does not know the code
		}
		return m.fail(r, status, err)
	}
	w.Header().Set("Cache-Control", "no-store") // the URL is temporary
	if m.Mode == mediaRedirect {
		http.Redirect(w, r, url, http.StatusFound)
		return nil
	}
	return m.proxy(w, r, url)
}

// proxyHeaders are the headers of DingTalk's file answer passed on.
var proxyHeaders = []string{"Content-Type", "Content-Length", "Content-Disposition", "Last-Modified", "ETag"}

// proxy streams the file at url, at most MaxSize bytes of it.
func (m *Media) proxy(w http.ResponseWriter, r *http.Request, url string) error {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, url, nil)
	if err != nil {
		return m.fail(r, http.StatusBadGateway, fmt.Errorf("DingTalk's download URL: %w", err))
	}
	resp, err := m.fetch.Do(req)
	if err != nil {
		return m.fail(r, http.StatusBadGateway, errors.New("fetching the file from DingTalk failed"))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m.fail(r, http.StatusBadGateway, fmt.Errorf("fetching the file from DingTalk: HTTP %d", resp.StatusCode))
	}
	if resp.ContentLength > m.MaxSize {
		return m.fail(r, http.StatusBadGateway, fmt.Errorf("the file has %d bytes, more than max_size (%d)", resp.ContentLength, m.MaxSize))
	}
	for _, name := range proxyHeaders {
		if value := resp.Header.Get(name); value != "" {
			w.Header().Set(name, value)
		}
	}
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(w, io.LimitReader(resp.Body, m.MaxSize+1))
	if n > m.MaxSize {
		// The status is sent: only a broken connection tells the client
		// that it did not get the whole file.
		m.logger.Warn("dingtalk_media cut off a file larger than max_size",
			zap.Int64("max_size", m.MaxSize), zap.String("remote_addr", clientAddr(r)))
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		m.logger.Warn("dingtalk_media could not stream a whole file", zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	return nil
}

// fail logs a request dingtalk_media could not serve and returns the error
// Caddy answers it with. The download code is not logged.
func (m *Media) fail(r *http.Request, status int, err error) error {
	m.logger.Warn("dingtalk_media could not serve a file",
		zap.Int("status", status), zap.String("remote_addr", clientAddr(r)), zap.Error(err))
	return caddyhttp.Error(status, err)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Media)(nil)
	_ caddy.CleanerUpper          = (*Media)(nil)
	_ caddyhttp.MiddlewareHandler = (*Media)(nil)
)
