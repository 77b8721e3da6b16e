// SPDX-License-Identifier: Apache-2.0

// Mochi MQTT as a bench/compare peer: one TCP listener, every client
// allowed, the limits bench/compare gives every broker. Prints READY once
// listening; stops on SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "listen address")
	inflight := flag.Int("inflight", 100, "QoS 1/2 messages in flight to one client")
	pending := flag.Int("writes-pending", 8192, "packets queued for one client's writer (a channel of this many pointers per client, made at connect)")
	flag.Parse()

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = math.MaxInt64
	caps.MaximumPacketSize = 0 // no limit
	caps.MaximumInflight = uint16(*inflight)
	caps.ReceiveMaximum = math.MaxUint16
	caps.MaximumClientWritesPending = int32(*pending)
	caps.MaximumMessageExpiryInterval = 0

	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		log.Fatal(err)
	}
	if err := server.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})); err != nil {
		log.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if err := server.Serve(); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("READY mqtt://%s\n", *addr)
	}()
	<-sigs
	_ = server.Close()
}
