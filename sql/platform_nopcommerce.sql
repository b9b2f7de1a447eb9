-- nopCommerce: an order's life (placed, processing, shipped with tracking,
-- delivered; another cancelled and refunded) through the shop's own tables
-- (quoted CamelCase names, integer status codes, phone in "Address").
\set SHOW_CONTEXT never
SET search_path = public;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
SELECT setval('wa_notify.message_id_seq', 1, false) AS reset_ids,
       setval('wa_notify.watch_id_seq', 1, false) AS reset_watch_ids;
INSERT INTO wa_notify.carrier (carrier, url_pattern)
  VALUES ('correios', 'https://rastreamento.correios.com.br/app/index.php?objeto={tracking}')
  ON CONFLICT DO NOTHING;

CREATE TABLE "Address" (
    "Id" serial PRIMARY KEY, "FirstName" text, "LastName" text, "Email" text, "Company" text,
    "CountryId" int, "StateProvinceId" int, "City" text, "Address1" text, "ZipPostalCode" text,
    "PhoneNumber" text, "FaxNumber" text, "CreatedOnUtc" timestamp NOT NULL DEFAULT now());
CREATE TABLE "Order" (
    "Id" serial PRIMARY KEY, "OrderGuid" uuid NOT NULL DEFAULT gen_random_uuid(),
    "CustomOrderNumber" text NOT NULL, "StoreId" int NOT NULL DEFAULT 1, "CustomerId" int NOT NULL,
    "BillingAddressId" int NOT NULL REFERENCES "Address", "ShippingAddressId" int REFERENCES "Address",
    "OrderStatusId" int NOT NULL, "ShippingStatusId" int NOT NULL, "PaymentStatusId" int NOT NULL,
    "CustomerCurrencyCode" text NOT NULL DEFAULT 'BRL', "OrderTotal" numeric(18,4) NOT NULL,
    "RefundedAmount" numeric(18,4) NOT NULL DEFAULT 0, "ShippingMethod" text,
    "PaidDateUtc" timestamp, "Deleted" boolean NOT NULL DEFAULT false,
    "CreatedOnUtc" timestamp NOT NULL DEFAULT now());
CREATE INDEX "IX_Order_CustomerId" ON "Order" ("CustomerId");
CREATE INDEX "IX_Order_CreatedOnUtc" ON "Order" ("CreatedOnUtc" DESC);
CREATE TABLE "Shipment" (
    "Id" serial PRIMARY KEY, "OrderId" int NOT NULL REFERENCES "Order", "TrackingNumber" text,
    "TotalWeight" numeric(18,4), "ShippedDateUtc" timestamp, "DeliveryDateUtc" timestamp,
    "ReadyForPickupDateUtc" timestamp, "AdminComment" text, "CreatedOnUtc" timestamp NOT NULL DEFAULT now());
CREATE INDEX "IX_Shipment_OrderId" ON "Shipment" ("OrderId");

-- the mapping of doc/mappings.md
\set order_ctx 'SELECT a."PhoneNumber" AS phone, a."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number, o."OrderTotal" AS total FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId" WHERE o."Id" = $1::int'
\set refund_ctx 'SELECT a."PhoneNumber" AS phone, a."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number, o."RefundedAmount" AS total FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId" WHERE o."Id" = $1::int'
\set ship_ctx 'SELECT a."PhoneNumber" AS phone, a."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number, o."ShippingMethod" AS carrier, s."TrackingNumber" AS tracking_number FROM "Order" o JOIN "Address" a ON a."Id" = o."BillingAddressId" LEFT JOIN LATERAL (SELECT * FROM "Shipment" s WHERE s."OrderId" = o."Id" ORDER BY s."Id" = ($2->>''Id'')::int DESC NULLS LAST, s."Id" DESC LIMIT 1) s ON true WHERE o."Id" = $1::int'
-- contexts run as wa_notify_context: it reads only what the shop grants it
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wa_notify_context;
SELECT wa_notify.watch('order_placed',       '"Order"',    '"Id"',      :'order_ctx') IS NOT NULL AS placed,
       wa_notify.watch('order_processing',   '"Order"',    '"Id"',      :'order_ctx', '"OrderStatusId" = 20') IS NOT NULL AS processing,
       wa_notify.watch('order_cancelled',    '"Order"',    '"Id"',      :'order_ctx', '"OrderStatusId" = 40') IS NOT NULL AS cancelled,
       wa_notify.watch('refund_issued',      '"Order"',    '"Id"',      :'refund_ctx', '"PaymentStatusId" IN (35, 40)') IS NOT NULL AS refunded,
       wa_notify.watch('shipment_created',   '"Shipment"', '"OrderId"', :'ship_ctx', '"ShippedDateUtc" IS NOT NULL') IS NOT NULL AS shipped,
       wa_notify.watch('shipment_delivered', '"Shipment"', '"OrderId"', :'ship_ctx', '"DeliveryDateUtc" IS NOT NULL') IS NOT NULL AS delivered;
SELECT event, source, order_key, fires_when FROM wa_notify.watches ORDER BY id;

INSERT INTO "Address" ("FirstName", "LastName", "PhoneNumber") VALUES
    ('Maria', 'Silva', '(11) 98765-4321'), ('João', 'Souza', '011 3456-7890'), ('Ana', 'Lima', '98765-4321');

-- order 1: placed (Pending 10, NotYetShipped 20, Pending 10) with the total fixed in the same transaction
BEGIN;
INSERT INTO "Order" ("CustomOrderNumber", "CustomerId", "BillingAddressId", "OrderStatusId",
                     "ShippingStatusId", "PaymentStatusId", "OrderTotal", "ShippingMethod")
VALUES ('1001', 1, 1, 10, 20, 10, 100, 'Correios');
UPDATE "Order" SET "OrderTotal" = 1234.5 WHERE "Id" = 1;
COMMIT;
-- paid, processing
UPDATE "Order" SET "PaymentStatusId" = 30, "PaidDateUtc" = now(), "OrderStatusId" = 20 WHERE "Id" = 1;
-- a shipment is created, then marked shipped; the tracking number typed in afterwards in the same transaction
INSERT INTO "Shipment" ("OrderId", "TotalWeight") VALUES (1, 1.5);
BEGIN;
UPDATE "Shipment" SET "ShippedDateUtc" = now() WHERE "Id" = 1;
UPDATE "Order" SET "ShippingStatusId" = 30 WHERE "Id" = 1;
UPDATE "Shipment" SET "TrackingNumber" = 'QB123456789BR' WHERE "Id" = 1;
COMMIT;
-- delivered, then complete (no event), then an admin edit (no event)
UPDATE "Shipment" SET "DeliveryDateUtc" = now() WHERE "Id" = 1;
UPDATE "Order" SET "ShippingStatusId" = 40, "OrderStatusId" = 30 WHERE "Id" = 1;
UPDATE "Shipment" SET "AdminComment" = 'left with the doorman' WHERE "Id" = 1;

-- order 2: placed, cancelled, edited while cancelled, refunded (partially, then fully)
INSERT INTO "Order" ("CustomOrderNumber", "CustomerId", "BillingAddressId", "OrderStatusId",
                     "ShippingStatusId", "PaymentStatusId", "OrderTotal", "ShippingMethod")
VALUES ('1002', 2, 2, 10, 20, 30, 59.9, 'Jadlog');
UPDATE "Order" SET "OrderStatusId" = 40 WHERE "Id" = 2;
UPDATE "Order" SET "ShippingMethod" = 'Retirada' WHERE "Id" = 2;
UPDATE "Order" SET "OrderStatusId" = 40, "Deleted" = false WHERE "Id" = 2;
UPDATE "Order" SET "PaymentStatusId" = 35, "RefundedAmount" = 20 WHERE "Id" = 2;
UPDATE "Order" SET "PaymentStatusId" = 40, "RefundedAmount" = 59.9 WHERE "Id" = 2;

-- order 3: placed by a customer whose phone has no area code
INSERT INTO "Order" ("CustomOrderNumber", "CustomerId", "BillingAddressId", "OrderStatusId",
                     "ShippingStatusId", "PaymentStatusId", "OrderTotal")
VALUES ('1003', 3, 3, 10, 20, 10, 10);
-- a rolled-back order
BEGIN;
INSERT INTO "Order" ("CustomOrderNumber", "CustomerId", "BillingAddressId", "OrderStatusId",
                     "ShippingStatusId", "PaymentStatusId", "OrderTotal")
VALUES ('1004', 1, 1, 10, 20, 10, 10);
ROLLBACK;

SELECT wa_notify._resolve_pending() AS resolved;
SELECT event, order_key, status, phone, params, tracking, error_message
  FROM wa_notify.message ORDER BY id;

-- the bodies the worker will POST for order 1
SELECT (p - 'biz_opaque_callback_data')::text AS shipment_created,
       p ->> 'biz_opaque_callback_data' = wa_notify._callback_data((SELECT id FROM wa_notify.message
                                            WHERE event = 'shipment_created' AND order_key = '1')) AS callback_is_id
  FROM wa_notify.preview('shipment_created', '1') p;
SELECT wa_notify.preview('refund_issued', '2') #> '{template,components,0,parameters}' AS refund_parameters;
UPDATE wa_notify.setting SET value = 'false' WHERE name = 'use_templates';
SELECT wa_notify.preview('shipment_created', '1') #>> '{text,body}' AS shipment_text;
UPDATE wa_notify.setting SET value = 'true' WHERE name = 'use_templates';

SELECT wa_notify.unwatch(event, to_regclass(source)) FROM wa_notify.watch ORDER BY id;
DROP TABLE "Shipment", "Order", "Address";
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
