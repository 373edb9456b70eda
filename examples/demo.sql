-- The demo database's first contents (run once, when weir creates demo.db).
CREATE TABLE items (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    price    REAL NOT NULL,
    in_stock BOOLEAN NOT NULL DEFAULT 1,
    tags     JSON,
    added    TEXT NOT NULL DEFAULT (datetime('now'))
);
INSERT INTO items (name, price, in_stock, tags) VALUES
    ('kettle', 24.5, 1, '["kitchen", "electric"]'),
    ('teapot', 18.0, 1, '["kitchen"]'),
    ('mug', 6.25, 1, '["kitchen", "ceramic"]'),
    ('tray', 12.0, 0, NULL),
    ('strainer', 4.75, 1, '{"mesh": "fine"}');
CREATE TABLE orders (
    id      INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    qty     INTEGER NOT NULL CHECK (qty > 0),
    placed  TEXT NOT NULL DEFAULT (datetime('now'))
);
INSERT INTO orders (item_id, qty) VALUES (1, 2), (3, 4), (3, 1);
