package caddymodule

import (
	"strings"
	"testing"
)

// TestNamedRobotsFollowTheNewestConfig checks what dingtalk_send and
// dingtalk_media see across reloads: the newest configuration's robot, the
// running one's again when a newer one is cleaned up (a failed load), and
// the only robot when none is named.
func TestNamedRobotsFollowTheNewestConfig(t *testing.T) {
	oldCfg, newCfg := &Handler{}, &Handler{}
	oldAPI, newAPI := &robotAPI{}, &robotAPI{}
	t.Cleanup(func() { unregisterRobots(oldCfg); unregisterRobots(newCfg) })

	registerRobot("alerts", oldAPI, oldCfg)
	if got, err := lookupRobot(""); err != nil || got != oldAPI {
		t.Fatalf("the only robot: %v, %v", got, err)
	}
	registerRobot("alerts", newAPI, newCfg) // a reload
	if got, _ := lookupRobot("alerts"); got != newAPI {
		t.Fatal("a reload's robot does not win")
	}
	unregisterRobots(newCfg) // the new config failed to load
	if got, _ := lookupRobot("alerts"); got != oldAPI {
		t.Fatal("the running config's robot is gone after a failed reload")
	}
	unregisterRobots(oldCfg)
	if _, err := lookupRobot("alerts"); err == nil || !strings.Contains(err.Error(), `"alerts"`) {
		t.Fatalf("a robot nobody configures: %v", err)
	}

	registerRobot("a", oldAPI, oldCfg)
	registerRobot("b", newAPI, oldCfg)
	if _, err := lookupRobot(""); err == nil || !strings.Contains(err.Error(), "2 bots") {
		t.Fatalf("no name with two robots: %v", err)
	}
}
