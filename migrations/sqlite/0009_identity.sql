-- The secret a store's storefront signs its shoppers' member ids with (HMAC-SHA256). It is kept
-- as is: verifying a signature needs it.
ALTER TABLE stores ADD COLUMN identity_secret TEXT;
