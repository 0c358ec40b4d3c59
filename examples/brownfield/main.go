package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	_ "modernc.org/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Getenv, log, nil); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("brownfield stopped", "err", err)
		os.Exit(1)
	}
}

// run serves the app until ctx ends; listening calls back with the
// address it listens on.
func run(ctx context.Context, getenv func(string) string, log *slog.Logger, listening func(addr string)) error {
	dsn, postgres := getenv("DATABASE_URL"), false
	driver := "sqlite"
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		driver, postgres = "pgx", true
	case dsn == "":
		dsn = "file:brownfield.db?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if !postgres {
		db.SetMaxOpenConns(1) // SQLite: one writer
	}
	if err := createSchema(ctx, db, postgres); err != nil {
		return fmt.Errorf("the app's schema: %w", err)
	}

	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return err
	}
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer meters.Shutdown(context.WithoutCancel(ctx))

	app, err := wire(ctx, db, postgres, getenv, meters, log)
	if err != nil {
		return fmt.Errorf("usersync: %w", err)
	}
	defer app.Close() // after the server's Shutdown: the ended sessions are read until then
	mux := http.NewServeMux()
	mount(mux, app, db, postgres, ordersOf(db, postgres))
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))

	addr := getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if listening != nil {
		listening(ln.Addr().String())
	}
	log.Info("brownfield listening", "addr", ln.Addr().String())
	ran := make(chan error, 1)
	go func() { ran <- app.Run(ctx) }() // the feed, the hourly reconcile, completion
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return errors.Join(err, srv.Shutdown(shutdown), waitRun(ctx, ran))
}

// waitRun waits for the app's background work to stop after ctx ended.
func waitRun(ctx context.Context, ran <-chan error) error {
	<-ctx.Done()
	if err := <-ran; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
