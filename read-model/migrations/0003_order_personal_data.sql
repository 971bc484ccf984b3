-- Personal data on the order view (docs/adr/0009-crypto-shredding.md). The projector opens
-- the sealed customer details of `OrderCreated` with the customer's data key and keeps them
-- here for display, until the customer is forgotten: then every personal column is NULL
-- and `personal_data` says 'erased'. A rebuild after the forget finds the keys destroyed
-- and writes the erased state directly.
--
--   none        the order carries no personal data
--   present     name, email and address are shown
--   erased      the customer was forgotten (or the key was gone when projected)
--   unavailable sealed, but this projector holds no master key to open it

ALTER TABLE read_model.order_view
    ADD COLUMN personal_data    text  NOT NULL DEFAULT 'none'
        CHECK (personal_data IN ('none', 'present', 'erased', 'unavailable')),
    ADD COLUMN customer_name    text,
    ADD COLUMN customer_email   text,
    ADD COLUMN shipping_address jsonb,
    ADD CONSTRAINT order_view_personal_data_only_when_present CHECK (
        personal_data = 'present'
        OR (customer_name IS NULL AND customer_email IS NULL AND shipping_address IS NULL)
    );

-- The forget event's update: every order of the customer.
CREATE INDEX order_view_by_customer ON read_model.order_view (customer_id);
