package kubectl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/clientcmd"
	utilexec "k8s.io/utils/exec"
)

// errPrinted is returned by commands that already reported on stderr.
var errPrinted = errors.New("error already printed")

// errInterrupted ends a streaming command whose context was cancelled,
// silently and with the shell's exit status for SIGINT.
var errInterrupted = errors.New("interrupted")

// fail prints err the way kubectl's cmdutil.CheckErr does and returns the
// *ExitError that Run hands back.
func fail(w io.Writer, err error) error {
	if errors.Is(err, errPrinted) {
		return &ExitError{Code: 1}
	}
	if errors.Is(err, errInterrupted) {
		return &ExitError{Code: 130}
	}
	// A remote command's exit status (exec) becomes kubectl's, with the
	// message as is, like cmdutil.CheckErr's uexec.ExitError case.
	var exitErr utilexec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		msg := err.Error() + "\n"
		io.WriteString(w, msg)
		return &ExitError{Code: exitErr.ExitStatus(), Message: msg}
	}
	msg := errorMessage(err)
	if msg != "" && !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	io.WriteString(w, msg)
	return &ExitError{Code: 1, Message: msg}
}

// errorMessage mirrors kubectl's cmdutil.checkErr.
func errorMessage(err error) string {
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) && len(agg.Errors()) == 1 {
		err = agg.Errors()[0]
	}
	var statusErr *apierrors.StatusError
	if errors.As(err, &statusErr) && statusErr.Status().Reason == metav1.StatusReasonInvalid {
		st := statusErr.Status()
		details := st.Details
		s := "The request is invalid"
		if details == nil {
			if st.Message != "" {
				s += ": " + st.Message
			}
			return s
		}
		if details.Kind != "" || details.Name != "" {
			s = fmt.Sprintf("The %s %q is invalid", details.Kind, details.Name)
		} else if st.Message != "" && len(details.Causes) == 0 {
			s += ": " + st.Message
		}
		if len(details.Causes) > 0 {
			return multilineError(s+": ", causesToAggregate(details.Causes))
		}
		return s
	}
	if clientcmd.IsConfigurationInvalid(err) {
		return multilineError("Error in configuration: ", err)
	}
	var nomatch *meta.NoResourceMatchError
	if errors.As(err, &nomatch) {
		pr := nomatch.PartialResource
		switch {
		case pr.Group != "" && pr.Version != "":
			return fmt.Sprintf("the server doesn't have a resource type %q in group %q and version %q", pr.Resource, pr.Group, pr.Version)
		case pr.Group != "":
			return fmt.Sprintf("the server doesn't have a resource type %q in group %q", pr.Resource, pr.Group)
		case pr.Version != "":
			return fmt.Sprintf("the server doesn't have a resource type %q in version %q", pr.Resource, pr.Version)
		default:
			return fmt.Sprintf("the server doesn't have a resource type %q", pr.Resource)
		}
	}
	if errors.As(err, &agg) {
		return multipleErrors("", agg.Errors())
	}
	msg, ok := standardErrorMessage(err)
	if !ok {
		msg = err.Error()
		if !strings.HasPrefix(msg, "error: ") {
			msg = "error: " + msg
		}
	}
	return msg
}

func standardErrorMessage(err error) (string, bool) {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		switch {
		case s.Reason == metav1.StatusReasonUnauthorized:
			return fmt.Sprintf("error: You must be logged in to the server (%s)", s.Message), true
		case s.Reason != "":
			return fmt.Sprintf("Error from server (%s): %s", s.Reason, err.Error()), true
		default:
			return fmt.Sprintf("Error from server: %s", err.Error()), true
		}
	}
	if apierrors.IsUnexpectedObjectError(err) {
		return fmt.Sprintf("Server returned an unexpected response: %s", err.Error()), true
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if strings.Contains(uerr.Err.Error(), "connection refused") {
			host := uerr.URL
			if u, perr := url.Parse(uerr.URL); perr == nil {
				host = u.Host
			}
			return fmt.Sprintf("The connection to the server %s was refused - did you specify the right host or port?", host), true
		}
		return fmt.Sprintf("Unable to connect to the server: %v", uerr.Err), true
	}
	return "", false
}

func messageForError(err error) string {
	if msg, ok := standardErrorMessage(err); ok {
		return msg
	}
	return err.Error()
}

func multipleErrors(prefix string, errs []error) string {
	buf := &bytes.Buffer{}
	for _, err := range errs {
		fmt.Fprintf(buf, "%s%v\n", prefix, messageForError(err))
	}
	return buf.String()
}

func multilineError(prefix string, err error) string {
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		errs := utilerrors.Flatten(agg).Errors()
		buf := &bytes.Buffer{}
		switch len(errs) {
		case 0:
			return fmt.Sprintf("%s%v\n", prefix, err)
		case 1:
			return fmt.Sprintf("%s%v\n", prefix, messageForError(errs[0]))
		default:
			fmt.Fprintln(buf, prefix)
			for _, err := range errs {
				fmt.Fprintf(buf, "* %v\n", messageForError(err))
			}
			return buf.String()
		}
	}
	return fmt.Sprintf("%s%s\n", prefix, err)
}

func causesToAggregate(causes []metav1.StatusCause) utilerrors.Aggregate {
	errs := make([]error, 0, len(causes))
	seen := map[string]bool{}
	for _, c := range causes {
		msg := fmt.Sprintf("%s: %s", c.Field, c.Message)
		if seen[msg] {
			continue
		}
		seen[msg] = true
		errs = append(errs, errors.New(msg))
	}
	return utilerrors.NewAggregate(errs)
}

// addSourceToErr prefixes an error with the file it came from, as
// kubectl's cmdutil.AddSourceToErr does.
func addSourceToErr(verb, source string, err error) error {
	if source == "" {
		return err
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		st := status.Status()
		st.Message = fmt.Sprintf("error when %s %q: %v", verb, source, st.Message)
		return &apierrors.StatusError{ErrStatus: st}
	}
	return fmt.Errorf("error when %s %q: %v", verb, source, err)
}
