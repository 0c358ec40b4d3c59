package usersync_test

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"log"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/usersync/usersync"
	"github.com/usersync/usersync/clerk"
	"github.com/usersync/usersync/memstore"
)

// The README's quick start, verbatim (TestQuickStartIsTheREADMEs holds
// them equal): an existing http.ServeMux app with Clerk. It has no Output
// comment, so go test compiles it without running it, and cannot have
// one: it fetches a real Clerk instance's keys at start and then serves
// on a fixed port until the process ends. ExampleWire (package clerk) runs
// the like with clerk.Wire and an instance's public key, with checked
// output.
func Example_quickStart() {
	syncer, webhook, err := clerk.Setup(context.Background(), memstore.New(), clerk.SetupConfig{Config: clerk.Config{
		Issuer:         "https://your-app.clerk.accounts.dev",       // your Frontend API URL
		WebhookSecrets: []string{os.Getenv("CLERK_WEBHOOK_SECRET")}, // whsec_...
	}})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /clerk-users-webhook", webhook) // public: Svix signs it
	mux.Handle("GET /api/me", syncer.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := usersync.UserFromContext(r.Context()) // stored from the token if the webhook has not come yet
		json.NewEncoder(w).Encode(user)
	})))
	log.Fatal(http.ListenAndServe("localhost:8080", mux))
}

// TestQuickStartIsTheREADMEs holds the README's quick start to
// Example_quickStart's body, line for line, so that the code the README
// shows is the code go vet and go test compile.
func TestQuickStartIsTheREADMEs(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n## Quick start\n")
	if !ok {
		t.Fatal(`README.md has no "## Quick start" section`)
	}
	_, block, ok := strings.Cut(after, "```go\n")
	block, _, closed := strings.Cut(block, "```\n")
	if !ok || !closed {
		t.Fatal("README.md's quick start has no ```go block")
	}

	src, err := os.ReadFile("quickstart_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "quickstart_example_test.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var body string
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == "Example_quickStart" {
			inner := string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
			for _, line := range strings.Split(strings.Trim(inner, "\n"), "\n") {
				body += strings.TrimPrefix(line, "\t") + "\n"
			}
		}
	}
	if body == "" {
		t.Fatal("quickstart_example_test.go has no Example_quickStart")
	}
	if block != body {
		t.Fatalf("README.md's quick start is not Example_quickStart's body:\n--- README.md\n%s--- Example_quickStart\n%s", block, body)
	}
}
