"""Top-level parameters each simulated endpoint accepts, copied from stripe-python 16.1.0's
params TypedDicts; anything else gets Stripe's "Received unknown parameter" 400."""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


PRODUCT_CREATE = _names(
    "active default_price_data description expand id images marketing_features metadata name "
    "package_dimensions shippable statement_descriptor tax_code tax_details type unit_label "
    "url"
)
PRODUCT_UPDATE = _names(
    "active default_price description expand images marketing_features metadata name "
    "package_dimensions shippable statement_descriptor tax_code tax_details unit_label url"
)
PRODUCT_LIST = _names(
    "active created ending_before expand ids limit shippable starting_after type url"
)
PRICE_CREATE = _names(
    "active billing_scheme currency currency_options custom_unit_amount expand lookup_key "
    "metadata nickname product product_data recurring tax_behavior tiers tiers_mode "
    "transfer_lookup_key transform_quantity unit_amount unit_amount_decimal"
)
PRICE_UPDATE = _names(
    "active currency_options expand lookup_key metadata nickname tax_behavior transfer_lookup_key"
)
PRICE_LIST = _names(
    "active created currency ending_before expand limit lookup_keys product recurring "
    "starting_after type"
)
CUSTOMER_CREATE = _names(
    "address balance business_name cash_balance description email expand individual_name "
    "invoice_prefix invoice_settings metadata name next_invoice_sequence payment_method phone "
    "preferred_locales shipping source tax tax_exempt tax_id_data test_clock validate"
)
CUSTOMER_UPDATE = _names(
    "address balance business_name cash_balance default_source description email expand "
    "individual_name invoice_prefix invoice_settings metadata name next_invoice_sequence "
    "phone preferred_locales shipping source tax tax_exempt validate"
)
CUSTOMER_LIST = _names("created email ending_before expand limit starting_after test_clock")
SESSION_CREATE = _names(
    "adaptive_pricing after_expiration allow_promotion_codes allowed_payment_method_types "
    "automatic_tax billing_address_collection branding_settings cancel_url "
    "client_reference_id consent_collection currency custom_fields custom_text customer "
    "customer_account customer_creation customer_email customer_update discounts "
    "excluded_payment_method_types expand expires_at integration_identifier invoice_creation "
    "line_items locale managed_payments metadata mode name_collection optional_items "
    "origin_context payment_intent_data payment_method_collection "
    "payment_method_configuration payment_method_data payment_method_options permissions "
    "phone_number_collection redirect_on_completion return_url saved_payment_method_options "
    "setup_intent_data shipping_address_collection shipping_options submit_type "
    "subscription_data success_url tax_id_collection ui_mode wallet_options"
)
SESSION_LIST = _names(
    "created customer customer_account customer_details ending_before expand limit "
    "payment_intent payment_link starting_after status subscription"
)
SESSION_EXPIRE = _names("expand")
PORTAL_SESSION_CREATE = _names(
    "after_expiration configuration customer customer_account expand flow_data locale "
    "on_behalf_of return_url"
)
SUBSCRIPTION_UPDATE = _names(
    "add_invoice_items application_fee_percent automatic_tax billing_cycle_anchor "
    "billing_schedules billing_thresholds cancel_at cancel_at_period_end cancellation_details "
    "collection_method days_until_due default_payment_method default_source default_tax_rates "
    "description discounts expand invoice_settings items metadata off_session on_behalf_of "
    "pause_collection payment_behavior payment_settings pending_invoice_item_interval "
    "proration_behavior proration_date transfer_data trial_end trial_from_plan trial_settings"
)
SUBSCRIPTION_LIST = _names(
    "automatic_tax collection_method created current_period_end current_period_start customer "
    "customer_account ending_before expand limit plan price starting_after status test_clock"
)
SUBSCRIPTION_CANCEL = _names("cancellation_details expand invoice_now prorate")
INVOICEITEM_CREATE = _names(
    "amount currency customer customer_account description discountable discounts expand "
    "invoice metadata period price_data pricing quantity quantity_decimal subscription "
    "tax_behavior tax_code tax_rates unit_amount_decimal"
)
INVOICEITEM_LIST = _names(
    "created customer customer_account ending_before expand invoice limit pending starting_after"
)
INVOICE_CREATE = _names(
    "account_tax_ids application_fee_amount auto_advance automatic_tax "
    "automatically_finalizes_at collection_method currency custom_fields customer "
    "customer_account days_until_due default_payment_method default_source default_tax_rates "
    "description discounts due_date effective_at expand footer from_invoice issuer metadata "
    "number on_behalf_of payment_settings pending_invoice_items_behavior rendering "
    "shipping_cost shipping_details statement_descriptor subscription transfer_data"
)
INVOICE_LIST = _names(
    "collection_method created customer customer_account due_date ending_before expand limit "
    "starting_after status subscription"
)
INVOICE_FINALIZE = _names("auto_advance expand")
INVOICE_PAY = _names("expand forgive mandate off_session paid_out_of_band payment_method source")
INVOICE_UPDATE = _names(
    "account_tax_ids application_fee_amount auto_advance automatic_tax "
    "automatically_finalizes_at collection_method custom_fields days_until_due "
    "default_payment_method default_source default_tax_rates description discounts due_date "
    "effective_at expand footer issuer metadata number on_behalf_of payment_settings "
    "rendering shipping_cost shipping_details statement_descriptor transfer_data"
)
REFUND_CREATE = _names(
    "amount charge currency customer expand instructions_email metadata origin payment_intent "
    "reason refund_application_fee reverse_transfer"
)
REFUND_LIST = _names("charge created ending_before expand limit payment_intent starting_after")
EVENT_LIST = _names("created delivery_success ending_before expand limit starting_after type types")
WEBHOOK_ENDPOINT_CREATE = _names(
    "api_version connect description enabled_events expand metadata url"
)
WEBHOOK_ENDPOINT_LIST = _names("ending_before expand limit starting_after")
PAYMENT_INTENT_LIST = _names(
    "created customer customer_account ending_before expand limit starting_after"
)
CHARGE_LIST = _names(
    "created customer ending_before expand limit payment_intent starting_after transfer_group"
)
RETRIEVE = _names("expand")
