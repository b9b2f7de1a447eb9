-- The nopCommerce-shaped shop tables of the capture benchmarks
-- (capture_bench.sh, capture_ab.sh): "Address", "Order" with nopCommerce's
-- indexes, "Shipment"; created in the first schema of the search path.
CREATE TABLE "Address" ("Id" serial PRIMARY KEY, "FirstName" text, "LastName" text, "Email" text,
    "PhoneNumber" text, "City" text, "CreatedOnUtc" timestamp NOT NULL DEFAULT now());
INSERT INTO "Address" ("FirstName", "PhoneNumber") SELECT 'Cliente ' || g, '(11) 9' || (80000000 + g)
  FROM generate_series(1, 1000) g;
CREATE TABLE "Order" (
    "Id" serial PRIMARY KEY, "OrderGuid" uuid NOT NULL DEFAULT gen_random_uuid(),
    "CustomOrderNumber" text NOT NULL, "StoreId" int NOT NULL DEFAULT 1, "CustomerId" int NOT NULL,
    "BillingAddressId" int NOT NULL REFERENCES "Address", "ShippingAddressId" int REFERENCES "Address",
    "PickupAddressId" int REFERENCES "Address",
    "OrderStatusId" int NOT NULL, "ShippingStatusId" int NOT NULL, "PaymentStatusId" int NOT NULL,
    "PaymentMethodSystemName" text, "CustomerCurrencyCode" text NOT NULL DEFAULT 'BRL',
    "OrderSubtotalInclTax" numeric(18,4) NOT NULL DEFAULT 0, "OrderShippingInclTax" numeric(18,4) NOT NULL DEFAULT 0,
    "OrderTax" numeric(18,4) NOT NULL DEFAULT 0, "OrderDiscount" numeric(18,4) NOT NULL DEFAULT 0,
    "OrderTotal" numeric(18,4) NOT NULL, "RefundedAmount" numeric(18,4) NOT NULL DEFAULT 0,
    "CustomerIp" text, "ShippingMethod" text, "ShippingRateComputationMethodSystemName" text,
    "PaidDateUtc" timestamp, "Deleted" boolean NOT NULL DEFAULT false,
    "CreatedOnUtc" timestamp NOT NULL DEFAULT now());
-- nopCommerce's indexes on "Order"
CREATE INDEX "IX_Order_CustomerId" ON "Order" ("CustomerId");
CREATE INDEX "IX_Order_BillingAddressId" ON "Order" ("BillingAddressId");
CREATE INDEX "IX_Order_ShippingAddressId" ON "Order" ("ShippingAddressId");
CREATE INDEX "IX_Order_PickupAddressId" ON "Order" ("PickupAddressId");
CREATE INDEX "IX_Order_CreatedOnUtc" ON "Order" ("CreatedOnUtc" DESC);
CREATE TABLE "Shipment" ("Id" serial PRIMARY KEY, "OrderId" int NOT NULL REFERENCES "Order",
    "TrackingNumber" text, "TotalWeight" numeric(18,4), "ShippedDateUtc" timestamp,
    "DeliveryDateUtc" timestamp, "AdminComment" text, "CreatedOnUtc" timestamp NOT NULL DEFAULT now());
CREATE INDEX "IX_Shipment_OrderId" ON "Shipment" ("OrderId");

