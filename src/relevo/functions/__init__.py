"""Handler functions: what a consumer calls with each decoded message body."""
