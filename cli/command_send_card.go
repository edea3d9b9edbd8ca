package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/caddy-dingtalk/caddy-dingtalk/dingtalk/dingtalktest"
)

// defaultTrialAppKey is the AppKey the fake OpenAPI of --openapi-listen
// knows when --app-key is not given.
const defaultTrialAppKey = "dingtrialappkey"

// startFakeOpenAPI plays DingTalk's OpenAPI on addr for the robot appKey,
// secret: the gateway's `api_base` points at it.
func startFakeOpenAPI(addr, appKey, secret string, stderr io.Writer) (*dingtalktest.OpenAPI, error) {
	if appKey == "" {
		appKey = defaultTrialAppKey
	}
	api, err := dingtalktest.ListenOpenAPI(addr, dingtalktest.OpenAPIApp{AppKey: appKey, AppSecret: secret})
	if err != nil {
		return nil, fmt.Errorf("--openapi-listen: %w", err)
	}
	fmt.Fprintf(stderr, "fake OpenAPI listening on %s for app key %s\n", api.URL, appKey)
	return api, nil
}

// waitForCards prints the AI card updates the gateway sends to the fake
// OpenAPI as they arrive, until count cards ended (finished or failed) or
// wait passed. A failed card is an error.
func waitForCards(ctx context.Context, api *dingtalktest.OpenAPI, count int, wait time.Duration, stdout, stderr io.Writer) error {
	fmt.Fprintf(stderr, "waiting up to %s for %d AI card(s) to end\n", wait, count)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	shown := map[string]int{} // updates printed, by card
	states := map[string]int{}
	for {
		changed := api.CardsChanged()
		ended, failed := 0, 0
		for i, c := range api.Cards() {
			if _, seen := shown[c.OutTrackID]; !seen {
				fmt.Fprintf(stdout, "card %d created (%s)\n", i+1, c.OpenSpaceID)
				shown[c.OutTrackID] = 0
			}
			for j, u := range c.Updates[shown[c.OutTrackID]:] {
				flags := ""
				if u.Finalize {
					flags += " final"
				}
				if u.Error {
					flags += " error"
				}
				fmt.Fprintf(stdout, "card %d update %d%s: %s\n", i+1, shown[c.OutTrackID]+j+1, flags, u.Content)
			}
			shown[c.OutTrackID] = len(c.Updates)
			for _, st := range c.States[states[c.OutTrackID]:] {
				fmt.Fprintf(stdout, "card %d state %s\n", i+1, cardStateName(st))
			}
			states[c.OutTrackID] = len(c.States)
			switch c.State() {
			case "3":
				ended++
			case "5":
				ended++
				failed++
			}
		}
		if failed > 0 {
			return errors.New("the gateway ended a card as failed")
		}
		if ended >= count {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("%d of %d AI card(s) ended within %s (--wait): does the gateway's api_base point at the fake OpenAPI, and does the route stream?", ended, count, wait)
		case <-ctx.Done():
			return errors.New("interrupted while waiting for AI cards")
		}
	}
}

// cardStateName names an AI card's flowStatus.
func cardStateName(st string) string {
	switch st {
	case "1":
		return "processing"
	case "2":
		return "inputting"
	case "3":
		return "finished"
	case "5":
		return "failed"
	}
	return st
}
