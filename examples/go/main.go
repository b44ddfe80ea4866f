// The Go example client of session-service: the code in gen/ is generated from proto/ by
// protoc-gen-go and protoc-gen-go-grpc (scripts/clients.sh generate). It runs one scenario
// against a running server and checks every answer; any failed check exits with status 1.
//
//	cd examples/go && go run . 127.0.0.1:50051
//	cd examples/go && go run . -cacert ca.crt [-cert client.crt -key client.key] localhost:50051
//
// With -cacert the connection uses TLS (and presents a client certificate with -cert/-key, for
// a server that requires mTLS). An API key is read from the SESSION_API_KEY environment variable
// (or -api-key, which other users of the machine can see in the process list) and sent with
// every call as "authorization: Bearer <key>".
//
// Scenario: create a session (enriched from a user agent and a campaign URL), update one field
// through a field mask, get it, list it by profile, watch its changes from the create's
// revision (the update arrives as CHANGE_KIND_UPDATED), and read the error details of a
// NOT_FOUND and an INVALID_ARGUMENT answer.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	sessionv1 "session-service/examples/go/gen/session/v1"
)

const (
	iphoneUA    = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
	campaignURL = "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring"
)

// check stops the scenario with a message when ok is false.
func check(ok bool, format string, args ...any) {
	if !ok {
		fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
		os.Exit(1)
	}
}

func must(err error, what string) {
	check(err == nil, "%s: %v", what, err)
}

// details returns the status code, the ErrorInfo and the BadRequest fields of a failed call.
func details(err error) (codes.Code, *errdetails.ErrorInfo, []string) {
	st := status.Convert(err)
	var info *errdetails.ErrorInfo
	var fields []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return st.Code(), info, fields
}

// bearerKey sends "authorization: Bearer <key>" with every call. It requires TLS unless the
// server is on loopback (a key sent in plaintext elsewhere could be read on the way).
type bearerKey struct {
	key    string
	secure bool
}

func (b bearerKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.key}, nil
}

func (b bearerKey) RequireTransportSecurity() bool { return b.secure }

// transport is plaintext, or TLS trusting cacert (with a client certificate for mTLS).
func transport(cacert, cert, key string) grpc.DialOption {
	if cacert == "" {
		if cert != "" || key != "" {
			check(false, "-cert and -key need -cacert (TLS)")
		}
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	pem, err := os.ReadFile(cacert)
	must(err, "read -cacert")
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		check(false, "-cacert %s holds no PEM certificate", cacert)
	}
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if (cert == "") != (key == "") {
		check(false, "give -cert and -key together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		must(err, "load -cert and -key")
		config.Certificates = []tls.Certificate{pair}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(config))
}

func main() {
	cacert := flag.String("cacert", "", "PEM CA certificate that signed the server's certificate: use TLS")
	cert := flag.String("cert", "", "PEM client certificate (mTLS), with -key")
	key := flag.String("key", "", "PEM private key of -cert")
	apiKey := flag.String("api-key", os.Getenv("SESSION_API_KEY"), "API key secret (default: $SESSION_API_KEY)")
	flag.Parse()
	addr := "127.0.0.1:50051"
	if flag.NArg() > 0 {
		addr = flag.Arg(0)
	}
	options := []grpc.DialOption{transport(*cacert, *cert, *key)}
	if *apiKey != "" {
		options = append(options, grpc.WithPerRPCCredentials(bearerKey{key: *apiKey, secure: *cacert != ""}))
	}
	conn, err := grpc.NewClient(addr, options...)
	must(err, "connect")
	defer conn.Close()
	client := sessionv1.NewSessionServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	profile := fmt.Sprintf("go-example-%d", time.Now().UnixNano())

	// Create: the server parses the user agent and the campaign parameters.
	created, err := client.CreateSession(ctx, &sessionv1.CreateSessionRequest{
		Session:   &sessionv1.Session{Profile: &sessionv1.Profile{Id: profile}, Metadata: &sessionv1.SessionMetadata{Channel: "web"}},
		UserAgent: iphoneUA,
		PageUrl:   campaignURL,
	})
	must(err, "CreateSession")
	s := created.GetSession()
	check(s.GetId() != "", "created session has no id")
	check(s.GetOs().GetName() == "iOS", "os.name = %q, want iOS", s.GetOs().GetName())
	check(s.GetUtm().GetSource() == "news", "utm.source = %q, want news", s.GetUtm().GetSource())
	check(s.GetMetadata().GetStatus() == "active", "metadata.status = %q, want active", s.GetMetadata().GetStatus())
	check(s.GetRevision() > 0, "revision = %d, want > 0", s.GetRevision())
	fmt.Printf("created %s (revision %d, %s %s)\n", s.GetId(), s.GetRevision(), s.GetOs().GetName(), s.GetApp().GetName())

	// Masked update: only device.geo.city changes; the os sent along is not in the mask.
	updated, err := client.UpdateSession(ctx, &sessionv1.UpdateSessionRequest{
		Session: &sessionv1.Session{
			Id:     s.GetId(),
			Device: &sessionv1.Device{Geo: &sessionv1.Geo{City: proto.String("Berlin")}},
			Os:     &sessionv1.Os{Name: "not-in-the-mask"},
		},
		UpdateMask:       &fieldmaskpb.FieldMask{Paths: []string{"device.geo.city"}},
		ExpectedRevision: proto.Int64(s.GetRevision()),
	})
	must(err, "UpdateSession")
	u := updated.GetSession()
	check(u.GetDevice().GetGeo().GetCity() == "Berlin", "device.geo.city = %q, want Berlin", u.GetDevice().GetGeo().GetCity())
	check(u.GetOs().GetName() == "iOS", "os.name = %q after the update, want iOS (not in the mask)", u.GetOs().GetName())
	check(u.GetRevision() > s.GetRevision(), "revision %d after the update, want > %d", u.GetRevision(), s.GetRevision())
	fmt.Printf("updated device.geo.city (revision %d)\n", u.GetRevision())

	// Get.
	got, err := client.GetSession(ctx, &sessionv1.GetSessionRequest{Id: s.GetId()})
	must(err, "GetSession")
	check(got.GetSession().GetDevice().GetGeo().GetCity() == "Berlin", "get: device.geo.city = %q", got.GetSession().GetDevice().GetGeo().GetCity())
	check(got.GetSession().GetRevision() == u.GetRevision(), "get: revision %d, want %d", got.GetSession().GetRevision(), u.GetRevision())

	// List by profile.
	listed, err := client.ListSessions(ctx, &sessionv1.ListSessionsRequest{ProfileId: profile})
	must(err, "ListSessions")
	check(len(listed.GetSessions()) == 1 && listed.GetSessions()[0].GetId() == s.GetId(), "list by profile returned %d sessions, want just %s", len(listed.GetSessions()), s.GetId())
	fmt.Printf("got and listed %s\n", s.GetId())

	// Watch from the create's revision: the update is replayed as CHANGE_KIND_UPDATED.
	watchCtx, stopWatch := context.WithTimeout(ctx, 10*time.Second)
	stream, err := client.WatchSessions(watchCtx, &sessionv1.WatchSessionsRequest{
		Filter:        &sessionv1.WatchFilter{Ids: []string{s.GetId()}},
		AfterRevision: proto.Int64(s.GetRevision()),
	})
	must(err, "WatchSessions")
	for {
		msg, err := stream.Recv()
		must(err, "WatchSessions: receiving the update")
		change := msg.GetChange()
		if change == nil {
			continue // a progress heartbeat
		}
		check(change.GetKind() == sessionv1.ChangeKind_CHANGE_KIND_UPDATED, "watch: kind %s, want CHANGE_KIND_UPDATED", change.GetKind())
		check(change.GetSession().GetId() == s.GetId(), "watch: session %q, want %q", change.GetSession().GetId(), s.GetId())
		check(change.GetSession().GetDevice().GetGeo().GetCity() == "Berlin", "watch: device.geo.city = %q", change.GetSession().GetDevice().GetGeo().GetCity())
		check(change.GetRevision() == u.GetRevision(), "watch: revision %d, want %d", change.GetRevision(), u.GetRevision())
		fmt.Printf("watch saw %s at revision %d\n", change.GetKind(), change.GetRevision())
		break
	}
	stopWatch()

	// Errors carry google.rpc.ErrorInfo and, for bad input, google.rpc.BadRequest.
	_, err = client.GetSession(ctx, &sessionv1.GetSessionRequest{Id: "no-such-session"})
	check(err != nil, "get of a missing session succeeded")
	code, info, _ := details(err)
	check(code == codes.NotFound, "missing session: code %s, want NotFound", code)
	check(info != nil && info.GetDomain() == "session.v1", "missing session: ErrorInfo %v, want domain session.v1", info)
	_, err = client.CreateSession(ctx, &sessionv1.CreateSessionRequest{Session: &sessionv1.Session{Id: "has space"}})
	check(err != nil, "create with an invalid id succeeded")
	code, _, fields := details(err)
	check(code == codes.InvalidArgument, "invalid id: code %s, want InvalidArgument", code)
	check(len(fields) > 0 && fields[0] == "session.id", "invalid id: BadRequest fields %v, want [session.id]", fields)
	fmt.Printf("errors: %s (%s), %s on %v\n", codes.NotFound, info.GetReason(), codes.InvalidArgument, fields)

	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		check(false, "scenario took longer than 30 s")
	}
	fmt.Println("go client: all checks passed")
}
