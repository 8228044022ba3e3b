-- name: _lock
-- Closing rows and completing a message happen under its envelope row lock (rows.py).
FOR NO KEY UPDATE
