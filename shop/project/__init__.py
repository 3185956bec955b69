"""Project plumbing: settings, URLs, WSGI, the embedded servers and `make run`, request logging and middleware."""
