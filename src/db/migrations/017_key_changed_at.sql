-- When the instance's recorded API key last changed (to the second): a key-rotated notice signed before it is an
-- older rotation, sent again, and must not put an older key's hash back.
ALTER TABLE instances ADD COLUMN key_changed_at timestamptz;
